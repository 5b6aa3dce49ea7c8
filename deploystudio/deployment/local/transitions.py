"""Moving local records through their states while their processes start and stop.

Several processes act on the same records (the app, the CLI, an endpoint's front marking a
crashed server failed, a reconcile at start-up), so a transition may find that someone else
moved the record first. These helpers accept what another actor already did (the record is in
the wanted state, or was stopped meanwhile) and let only real conflicts through.
"""

from __future__ import annotations

from pathlib import Path

from deploystudio.deployment.base import Deployment, DeploymentState, Endpoint
from deploystudio.deployment.local.processes import FRONT_LOG, SERVER_LOG, ServerKind, ServerProcess
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import StateTransitionError

State = DeploymentState
_STOPPED_MEANWHILE = frozenset({State.STOPPING, State.STOPPED})


def deployment_process(deployment: Deployment) -> ServerProcess | None:
    """The server a record names, or None when it names none."""
    if deployment.pid is None or deployment.port is None:
        return None
    log = Path(deployment.log_path) if deployment.log_path else Path(SERVER_LOG)
    return ServerProcess(ServerKind(deployment.runtime.value), deployment.pid, deployment.port, log)


def front_process(endpoint: Endpoint, folder: Path) -> ServerProcess | None:
    """The front an endpoint record names (its log is in the endpoint's `folder`), or None."""
    if endpoint.front_pid is None or endpoint.front_port is None:
        return None
    return ServerProcess(
        ServerKind.FRONT, endpoint.front_pid, endpoint.front_port, folder / FRONT_LOG
    )


def move(
    store: DeploymentStore,
    deployment: Deployment,
    state: DeploymentState,
    reason: str | None = None,
    **process: object,
) -> Deployment:
    """`store.set_state`, accepting a record another actor moved to `state` or stopped.

    The caller compares the returned record's state with `state`.
    """
    try:
        return store.set_state(
            deployment.endpoint_name, deployment.name, state, reason=reason, **process
        )
    except StateTransitionError:
        current = store.get_deployment(deployment.endpoint_name, deployment.name)
        if current.state is state or current.state in _STOPPED_MEANWHILE:
            return current
        raise


def move_endpoint(
    store: DeploymentStore, name: str, state: DeploymentState, reason: str | None = None
) -> Endpoint:
    """`store.set_endpoint_state`, with the same tolerance as `move`."""
    try:
        return store.set_endpoint_state(name, state, reason=reason)
    except StateTransitionError:
        current = store.get_endpoint(name)
        if current.state is state or current.state in _STOPPED_MEANWHILE:
            return current
        raise


def stop_deployment(store: DeploymentStore, deployment: Deployment) -> bool:
    """Stop the deployment's server and leave the record `stopped`; True if a process ran.

    Pending records (a create in progress elsewhere, no process yet) and failed ones whose
    process is gone are left as they are.
    """
    process = deployment_process(deployment)
    alive = process is not None and process.is_ours()
    if deployment.state in (State.PENDING, State.STOPPED):
        return False
    if deployment.state is State.FAILED and not alive:
        if process is not None:
            process.stop()  # what its dead leader left behind (workers still holding the port)
        return False
    if deployment.state is not State.STOPPING:
        deployment = move(store, deployment, State.STOPPING)
    stopped = process.stop() if process is not None else False
    move(store, deployment, State.STOPPED)
    return stopped


def stop_front(store: DeploymentStore, endpoint: Endpoint, folder: Path) -> bool:
    """Stop the endpoint's front and leave the record `stopped`; True if a process ran."""
    process = front_process(endpoint, folder)
    alive = process is not None and process.is_ours()
    if endpoint.state in (State.PENDING, State.STOPPED):
        return False
    if endpoint.state is State.FAILED and not alive:
        return False
    if endpoint.state is not State.STOPPING:
        move_endpoint(store, endpoint.name, State.STOPPING)
    stopped = process.stop() if process is not None else False
    move_endpoint(store, endpoint.name, State.STOPPED)
    return stopped
