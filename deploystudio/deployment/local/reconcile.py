"""Bring the store in line with the processes that really run, and stop everything.

`reconcile` runs when the app starts: servers outlive the app (they are detached), so a record
that says ready is believed only while its pid is alive, is still our server on that port, and
answers its readiness URL. `repair` is the lighter pass run by every CLI command that touches
an endpoint and every few seconds by the app: it settles records whose starter died and starts
a dead front again, and leaves ready deployments to their front, which restarts their servers
itself (healing.py). `stop_all` stops every process of the local target, including any that no
record names any more.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from deploystudio import inference_server
from deploystudio.deployment.base import Deployment, DeploymentState, Endpoint
from deploystudio.deployment.local import starter_lock
from deploystudio.deployment.local.processes import ServerProcess, our_processes
from deploystudio.deployment.local.transitions import (
    deployment_process,
    front_process,
    move,
    move_endpoint,
    stop_deployment,
    stop_front,
)
from deploystudio.deployment.store import DeploymentStore

State = DeploymentState
GONE = "the process was gone when Deploy Studio started"
GONE_NOW = "the process was found gone"
SILENT = (
    "the process did not answer its readiness check when Deploy Studio started, so it was stopped"
)
# A record left pending or starting this long after its last change had its creator die.
_GRACE_SECONDS = 60.0


def _label(record: Deployment | Endpoint) -> str:
    if isinstance(record, Deployment):
        return f"deployment {record.endpoint_name}/{record.name}"
    return f"endpoint {record.name}"


def _age_seconds(record: Deployment | Endpoint) -> float:
    return (datetime.now(UTC) - record.updated_at).total_seconds()


def _tail(process: ServerProcess | None) -> str | None:
    return inference_server.log_tail(process.log_path) if process else None


def reconcile_deployment(
    store: DeploymentStore,
    deployment: Deployment,
    start_timeout_seconds: float,
    folder: Path | None = None,
    patient: bool = False,
    gone: str = GONE,
) -> str | None:
    """Adopt, fail or finish stopping one deployment; say what was done (None: nothing).

    `folder` is the deployment's folder: when the process that started it has ended, a
    pending or starting record is settled at once and servers it started but never recorded
    are stopped. `patient`: a live server of a starting record whose starter died gets the
    rest of its start timeout to answer, instead of being stopped now. `gone` words the
    reason of a record whose process is gone.
    """
    label = _label(deployment)
    process = deployment_process(deployment)
    starter_gone = folder is not None and starter_lock.abandoned(folder)
    if starter_gone:
        for stray in our_processes(folder):
            if stray.pid != deployment.pid:
                stray.stop()
    alive = process is not None and process.is_ours()
    stale = starter_gone or _age_seconds(deployment) > start_timeout_seconds + _GRACE_SECONDS
    if deployment.state is State.PENDING and stale:
        reason = "its creation was interrupted: restart it, or delete it and deploy again"
        move(store, deployment, State.FAILED, reason=reason)
        return f"{label}: creation was interrupted, marked failed"
    if deployment.state is State.STOPPING:
        if process is not None:
            process.stop()
        move(store, deployment, State.STOPPED)
        return f"{label}: finished stopping"
    if deployment.state not in (State.STARTING, State.READY):
        return None
    if not alive:
        if process is not None:
            process.stop()  # what its dead leader left behind (workers still holding the port)
        reason = f"The server (pid {deployment.pid}): {gone}. Restart the deployment."
        move(store, deployment, State.FAILED, reason=reason, log_tail=_tail(process))
        return f"{label}: {gone}, marked failed"
    if process.answers():
        if deployment.state is State.STARTING:
            move(store, deployment, State.READY)
        return f"{label}: adopted (pid {deployment.pid}, port {deployment.port})"
    aged = _age_seconds(deployment) > start_timeout_seconds + _GRACE_SECONDS
    if deployment.state is State.STARTING and not (aged if patient else stale):
        return f"{label}: still starting (pid {deployment.pid})"
    process.stop()
    reason = f"The server (pid {deployment.pid}): {SILENT}. Restart the deployment."
    move(store, deployment, State.FAILED, reason=reason, log_tail=_tail(process))
    return f"{label}: {SILENT}, marked failed"


def reconcile_front(
    store: DeploymentStore,
    endpoint: Endpoint,
    folder: Path,
    start_front: Callable[[str], Endpoint],
) -> str | None:
    """Adopt the endpoint's front, or start it again when the endpoint has ready deployments.

    The front holds no state (it reads everything from the store), so a new one serves the
    same endpoint; it keeps its port when that port is still free.
    """
    label = _label(endpoint)
    process = front_process(endpoint, folder)
    alive = process is not None and process.is_ours()
    serving = any(d.state is State.READY for d in store.list_deployments(endpoint.name))
    if endpoint.state is State.STOPPING:
        stop_front(store, endpoint, folder)
        return f"{label}: front finished stopping"
    if endpoint.state in (State.STARTING, State.READY):
        if alive and process.answers():
            if endpoint.state is State.STARTING:
                move_endpoint(store, endpoint.name, State.READY)
            return f"{label}: front adopted (pid {endpoint.front_pid}, port {endpoint.front_port})"
        if alive and endpoint.state is State.STARTING:
            return f"{label}: front still starting"
        if alive:
            process.stop()
    return _replace_dead_front(store, endpoint, GONE, serving, start_front)


def _replace_dead_front(
    store: DeploymentStore,
    endpoint: Endpoint,
    gone: str,
    serving: bool,
    start_front: Callable[[str], Endpoint],
) -> str | None:
    """A front found not running: a starting or ready record fails saying `gone`, and a front
    with a ready deployment behind it is started again; say what was done."""
    label = _label(endpoint)
    if endpoint.state in (State.STARTING, State.READY):
        reason = f"The front (pid {endpoint.front_pid}): {gone}."
        endpoint = move_endpoint(store, endpoint.name, State.FAILED, reason=reason)
        if not serving:
            return f"{label}: front {gone}, marked failed"
    if endpoint.state is State.FAILED and serving:
        started = start_front(endpoint.name)
        return f"{label}: front started again ({started.state.value}, {started.scoring_uri})"
    return None


def reconcile(
    store: DeploymentStore,
    endpoints_root: Path,
    start_front: Callable[[str], Endpoint],
    start_timeout_seconds: float,
) -> list[str]:
    """Reconcile every deployment, then every endpoint's front; return what was done."""
    done = []
    for deployment in store.list_deployments():
        folder = endpoints_root / deployment.endpoint_name.lower() / deployment.name.lower()
        note = reconcile_deployment(store, deployment, start_timeout_seconds, folder)
        if note:
            done.append(note)
    for endpoint in store.list_endpoints():
        folder = endpoints_root / endpoint.name.lower()
        note = reconcile_front(store, endpoint, folder, start_front)
        if note:
            done.append(note)
    if done:
        store.audit("reconcile", "local", new=done)
    return done


def repair_front(
    store: DeploymentStore,
    endpoint: Endpoint,
    folder: Path,
    start_front: Callable[[str], Endpoint],
) -> str | None:
    """Start the endpoint's front again when it should run and does not; say what was done.

    A front that runs is left alone, even one slow to answer: only its absence is repaired.
    """
    process = front_process(endpoint, folder)
    label = _label(endpoint)
    if process is not None and process.is_ours():
        if endpoint.state is State.STARTING and process.answers():
            # Its starter may have been killed after the front came up: adopt it.
            move_endpoint(store, endpoint.name, State.READY)
            return f"{label}: front adopted (pid {endpoint.front_pid}, port {endpoint.front_port})"
        return None
    serving = any(d.state is State.READY for d in store.list_deployments(endpoint.name))
    return _replace_dead_front(store, endpoint, GONE_NOW, serving, start_front)


def repair(
    store: DeploymentStore,
    endpoints_root: Path,
    start_front: Callable[[str], Endpoint],
    start_timeout_seconds: float,
    endpoint: str | None = None,
) -> list[str]:
    """Settle the records of `endpoint` (or of all) that no live process stands behind; return
    what was done (audited), nothing when all is as recorded.

    Pending and starting records whose starter died are settled as `reconcile` settles them
    (a server that answers is adopted, others fail); stopping records left by a dead stop are
    finished once stale; a dead front is started again. Ready deployments are their front's.
    """
    done = []
    endpoints = [store.get_endpoint(endpoint)] if endpoint else store.list_endpoints()
    for record in endpoints:
        root = endpoints_root / record.name.lower()
        for deployment in store.list_deployments(record.name):
            folder = root / deployment.name.lower()
            stale = _age_seconds(deployment) > start_timeout_seconds + _GRACE_SECONDS
            settling = deployment.state in (State.PENDING, State.STARTING) and (
                starter_lock.abandoned(folder) or stale
            )
            if settling or (deployment.state is State.STOPPING and stale):
                note = reconcile_deployment(
                    store, deployment, start_timeout_seconds, folder, patient=True, gone=GONE_NOW
                )
                if note and "still starting" not in note:
                    done.append(note)
        note = repair_front(store, store.get_endpoint(record.name), root, start_front)
        if note:
            done.append(note)
    if done:
        store.audit("repair", "local", new=done)
    return done


def stop_all(store: DeploymentStore, endpoints_root: Path) -> list[str]:
    """Stop every deployment server and front, records -> stopped; return what was stopped.

    Then stops any server of ours still running under `endpoints_root` that no record names
    (e.g. one whose starter died before writing its pid), so no process and no port is left.
    """
    done = []
    for deployment in store.list_deployments():
        if stop_deployment(store, deployment):
            done.append(f"{_label(deployment)} (pid {deployment.pid}, port {deployment.port})")
    for endpoint in store.list_endpoints():
        folder = endpoints_root / endpoint.name.lower()
        if stop_front(store, endpoint, folder):
            done.append(
                f"{_label(endpoint)} front (pid {endpoint.front_pid}, port {endpoint.front_port})"
            )
    if endpoints_root.is_dir():
        for process in our_processes(endpoints_root):
            if process.stop():
                done.append(
                    f"unrecorded {process.kind} server (pid {process.pid}, port {process.port})"
                )
    store.audit("stop_all", "local", new=done)
    return done
