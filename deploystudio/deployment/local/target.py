"""The local deployment target: endpoints whose deployments are real server processes on
127.0.0.1, the behaviour of Azure ML managed online endpoints on this machine.

Each deployment is its own detached server (Azure ML's inference server with a scoring script,
or MLflow's scoring server), each endpoint one detached front (`deployment.front`) that serves
the scoring URI, checks keys and splits traffic; both outlive the app. The store is the single
source of truth: every step is written there first (pending -> starting -> ready | failed) and
`reconcile` squares it with the live processes when the app starts.

Layout under the data folder: `endpoints/<endpoint>/front.log` and, per start of a deployment,
`endpoints/<endpoint>/<deployment>/<n>/` with score.py, the staged model and server.log. A new
start gets a new folder so that a rolling update never touches the files of the server that
still serves; the folder of a server that has stopped is removed at the next start.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deploystudio import inference_server
from deploystudio.config import Settings
from deploystudio.deployment import invoke
from deploystudio.deployment.adaptive_batching import check_batching
from deploystudio.deployment.base import (
    AuthMode,
    Capability,
    Deployment,
    DeploymentState,
    DeploymentTarget,
    Endpoint,
    EndpointKeys,
    Progress,
    Runtime,
    local_auth_mode,
)
from deploystudio.deployment.history import StoreHistory
from deploystudio.deployment.local import reconcile as recovery
from deploystudio.deployment.local.crashes import start_failure
from deploystudio.deployment.local.healing import restart_count
from deploystudio.deployment.local.processes import HOST, ServerProcess, wait_ready
from deploystudio.deployment.local.servers import (
    ServerConfig,
    bundle_script,
    deployment_server_config,
    first_line,
    log_tail_inside,
    new_run_folder,
    runtime_of,
    start_deployment_server,
    start_front,
)
from deploystudio.deployment.local.starter_lock import in_progress, starting
from deploystudio.deployment.local.traffic_guard import check_ready_for_traffic
from deploystudio.deployment.local.transitions import (
    deployment_process,
    move,
    move_endpoint,
    stop_deployment,
    stop_front,
)
from deploystudio.deployment.names import validate_name
from deploystudio.deployment.store import DeploymentStore
from deploystudio.deployment.traffic import endpoint_share
from deploystudio.errors import (
    DeploymentConfigError,
    DeploymentNotFoundError,
    DeployStudioError,
    EndpointFrontError,
    EndpointNotFoundError,
    ResourceInUseError,
    ScoringServerError,
)
from deploystudio.model_uri import ModelUriKind, parse_model_uri, registered_version_uri
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry

State = DeploymentState

DEFAULT_START_TIMEOUT_SECONDS = 300.0
FRONT_START_TIMEOUT_SECONDS = 60.0
# How long a change may take to reach an endpoint's front (it re-reads the store every 0.25 s).
FRONT_SYNC_SECONDS = 3.0
FRONT_REFRESH_SECONDS = 0.3
ENDPOINTS_FOLDER = "endpoints"
_CREATE_ENDPOINT_KEYS = {"auth_mode", "description", "tags"}
_UPDATE_ENDPOINT_KEYS = {"description", "tags", "traffic", "mirror"}
_DEPLOYMENT_KEYS = {"runtime", "bundle", "settings"}


def _silent(message: str) -> None:
    """The default progress callback: report nothing."""


class LocalTarget(StoreHistory, DeploymentTarget):
    """Local online endpoints over the deployment store in the studio's data folder."""

    capabilities = frozenset(Capability)

    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS,
        store: DeploymentStore | None = None,
    ) -> None:
        """`registry` is read in this process (it may hold credentials); servers never see it."""
        self.settings = settings
        self.store = store or DeploymentStore.from_settings(settings)
        self.start_timeout_seconds = start_timeout_seconds
        self.root = settings.home / ENDPOINTS_FOLDER
        self._registry = registry

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings.tracking_uri, self.settings.registry_uri)
        return self._registry

    # -- endpoints ---------------------------------------------------------------------------

    def create_endpoint(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        """Create the endpoint and start its front; returns it ready, or failed with the reason.

        Config: "auth_mode" ("key", the default, or "none"), "description", "tags".
        """
        config = _checked_keys(config, _CREATE_ENDPOINT_KEYS, "an endpoint at creation")
        endpoint = self.store.create_endpoint(
            name,
            auth_mode=local_auth_mode(config.get("auth_mode", AuthMode.KEY)),
            description=str(config.get("description", "")),
            tags=config.get("tags"),
        )
        return self._start_front(endpoint.name, progress or _silent)

    def update_endpoint(
        self,
        endpoint: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        """Change "description", "tags", "traffic" ({deployment: percent}) and/or "mirror"
        ((deployment, percent) or None); traffic without "mirror" keeps the current mirror."""
        config = _checked_keys(config, _UPDATE_ENDPOINT_KEYS, "an endpoint")
        current = self.store.get_endpoint(endpoint)
        if "tags" in config and not isinstance(config["tags"], Mapping):
            raise DeploymentConfigError(f"Tags must map names to values, not {config['tags']!r}.")
        if "traffic" in config or "mirror" in config:
            weights = config.get("traffic", current.traffic)
            mirror = config.get("mirror", current.mirror)
            check_ready_for_traffic(current, self.store.list_deployments, weights, mirror)
            after = self.store.set_traffic(endpoint, weights, tuple(mirror) if mirror else None)
            self._await_front(
                after.name,
                lambda view: (
                    view.get("config", {}).get("traffic") == after.traffic
                    and view.get("config", {}).get("mirror")
                    == (list(after.mirror) if after.mirror else None)
                ),
            )
        changes = {k: config[k] for k in ("description", "tags") if k in config}
        if changes:
            return self.store.update_endpoint(endpoint, changes)
        return self.store.get_endpoint(endpoint)

    def set_traffic(
        self,
        endpoint: str,
        traffic: Mapping[str, int],
        mirror: tuple[str, int] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        config = {"traffic": dict(traffic), "mirror": mirror}
        return self.update_endpoint(endpoint, config, progress=progress)

    def delete_endpoint(self, endpoint: str, *, progress: Progress | None = None) -> None:
        """Stop the endpoint's deployments and front, then delete its records and folder."""
        try:
            record = self.store.get_endpoint(endpoint)
        except EndpointNotFoundError:
            return
        for deployment in self.store.list_deployments(record.name):
            stop_deployment(self.store, deployment)
        stop_front(self.store, self.store.get_endpoint(record.name), self._folder(record.name))
        self.store.delete_endpoint(record.name, missing_ok=True)
        shutil.rmtree(self._folder(record.name), ignore_errors=True)

    def list_endpoints(self) -> list[Endpoint]:
        return self.store.list_endpoints()

    def get_endpoint(self, endpoint: str) -> Endpoint:
        return self.store.get_endpoint(endpoint)

    def get_keys(self, endpoint: str) -> EndpointKeys:
        """The endpoint's two keys (masked in repr). Raises EndpointAuthError for auth "none"."""
        return self.store.get_keys(endpoint)

    def regenerate_key(
        self, endpoint: str, which: str, *, progress: Progress | None = None
    ) -> EndpointKeys:
        """Replace the "primary" or "secondary" key; returns once the front accepts it."""
        keys = self.store.regenerate_key(endpoint, which)
        new_key = keys.primary if which == "primary" else keys.secondary
        self._await_front(endpoint, lambda view: True, key=new_key)
        return keys

    def _folder(self, endpoint: str, deployment: str | None = None) -> Path:
        # Names passed Azure's rule (letters, digits, dashes) and are unique ignoring case.
        folder = self.root / endpoint.lower()
        return folder / deployment.lower() if deployment else folder

    def _start_front(self, name: str, progress: Progress) -> Endpoint:
        """Start the endpoint's front and wait for it: pending/failed/stopped -> starting ->
        ready, or failed with the reason (the front then stopped)."""
        folder = self._folder(name)
        # The same port as before when it is still free: the scoring URI then stays the same.
        previous = self.store.get_endpoint(name).scoring_uri
        port = urlsplit(previous).port if previous else None
        try:
            process = start_front(self.store.path, name, folder, port)
        except ScoringServerError as exc:
            return move_endpoint(self.store, name, State.FAILED, reason=str(exc))
        try:
            self.store.set_endpoint_process(name, process.pid, process.port, process.score_url)
            endpoint = move_endpoint(self.store, name, State.STARTING)
            if endpoint.state is not State.STARTING:  # stopped by someone else meanwhile
                process.stop()
                return endpoint
            wait_ready(process, FRONT_START_TIMEOUT_SECONDS, progress, "endpoint's front")
        except ScoringServerError as exc:
            process.stop()
            return move_endpoint(self.store, name, State.FAILED, reason=str(exc))
        except BaseException:
            process.stop()
            move_endpoint(self.store, name, State.FAILED, reason="Its start was interrupted.")
            raise
        progress(f"Endpoint {name} answers at {process.score_url}")
        return move_endpoint(self.store, name, State.READY)

    def _await_front(
        self, name: str, serves: Callable[[dict[str, Any]], bool], key: str | None = None
    ) -> bool:
        """Wait (at most FRONT_SYNC_SECONDS) until the endpoint's front serves what the store
        now says, as `serves` judges from its metrics document; False if it never did.

        The front re-reads the store four times a second. Waiting here gives callers their own
        writes: a test call right after a traffic change meets the new traffic, and an update
        stops the old server only once the front sends nothing more to it.
        """
        endpoint = self.store.get_endpoint(name)
        if endpoint.state is not State.READY or endpoint.front_port is None:
            return False
        if key is None and endpoint.auth_mode is AuthMode.KEY:
            key = self.store.get_keys(name).primary
        front_url = f"http://{HOST}:{endpoint.front_port}"
        deadline = time.monotonic() + FRONT_SYNC_SECONDS
        while True:
            view = invoke.front_view(front_url, key)
            if view is not None and serves(view):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _ensure_front(self, name: str, progress: Progress) -> None:
        """Start the front of an endpoint that has a ready deployment but no running front."""
        endpoint = self.store.get_endpoint(name)
        if endpoint.state in (State.FAILED, State.STOPPED):
            self._start_front(name, progress)

    # -- deployments -------------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        endpoint: str,
        config: Mapping[str, Any] | None = None,
        *,
        timeout_seconds: float | None = None,
        progress: Progress | None = None,
    ) -> Deployment:
        """Deploy `model_uri` (aliases resolved to their version now) with no traffic.

        Config: "runtime" ("azureml", the default, or "mlflow"), "bundle" ("name:version", a
        saved scoring bundle whose score.py serves the model; azureml runtime only), "settings"
        ({"instance_count": workers, "environment_variables": [names]}). Blocks until the
        server answers; returns the record ready, or failed with the reason and log tail.
        """
        config = _checked_keys(config, _DEPLOYMENT_KEYS, "a deployment")
        validate_name(name, "deployment")
        runtime = runtime_of(config.get("runtime", Runtime.AZUREML))
        bundle = config.get("bundle")
        script = bundle_script(self.settings.home, bundle, runtime) if bundle else None
        settings = config.get("settings")  # checked by the store
        resolved = self._resolve(model_uri)
        # Held until the record is ready or failed: reconcile tells a dead starter by it.
        with starting(self._folder(endpoint, name)):
            record = self.store.create_deployment(
                endpoint, name, resolved, runtime, bundle, settings
            )
            try:
                server = self._server_config(record, script)
            except BaseException as exc:
                # Nothing started: the record says why instead of staying pending, and is
                # returned as the interface promises; only an interrupt propagates.
                failed = move(self.store, record, State.FAILED, reason=_reason(exc))
                if isinstance(exc, Exception):
                    return failed
                raise
            return self._launch(record, server, timeout_seconds, progress or _silent)

    def update_deployment(
        self,
        name: str,
        endpoint: str,
        model_uri: str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        timeout_seconds: float | None = None,
        progress: Progress | None = None,
    ) -> Deployment:
        """Serve a new model and/or config. A ready deployment is updated without a gap: the
        new server starts beside the old one, the record switches to it, the old one stops.

        If the new server does not start, the old one keeps serving, the record is unchanged
        and ScoringServerError says why (with the new server's log tail). A deployment that is
        not ready is changed and restarted.
        """
        config = _checked_keys(config, _DEPLOYMENT_KEYS, "a deployment")
        progress = progress or _silent
        current = self.store.get_deployment(endpoint, name)
        changes = dict(config)
        if "runtime" in changes:
            changes["runtime"] = runtime_of(changes["runtime"])
        if model_uri is not None:
            changes["model_uri"] = self._resolve(model_uri)
        runtime = changes.get("runtime", current.runtime)
        bundle = changes.get("bundle", current.bundle)
        script = bundle_script(self.settings.home, bundle, runtime) if bundle else None
        if current.state is not State.READY:
            if current.state in (State.PENDING, State.STARTING, State.STOPPING):
                raise ResourceInUseError(
                    f"Deployment {current.endpoint_name}/{current.name} is "
                    f"{current.state.value}: wait until it is ready or failed, then update it."
                )
            self.store.update_deployment(endpoint, name, changes)
            return self.restart_deployment(
                name, endpoint, timeout_seconds=timeout_seconds, progress=progress
            )
        updated = _with_changes(current, changes)
        server = self._server_config(updated, script)
        # Held until the switch is done: reconcile stops a new server its dead starter left.
        with starting(self._folder(current.endpoint_name, current.name)):
            process = self._spawn(current, server)
            try:
                wait_ready(process, self._timeout(timeout_seconds), progress, "new server")
            except ScoringServerError as exc:
                process.stop()
                self.store.audit(
                    "update_failed",
                    f"{current.endpoint_name}/{current.name}",
                    endpoint=current.endpoint_name,
                    new={"changes": _jsonable(changes), "reason": first_line(str(exc))},
                )
                raise ScoringServerError(
                    f"The update of {current.endpoint_name}/{current.name} did not start, so it "
                    f"still serves {current.model_uri} unchanged. {exc}"
                ) from None
            except BaseException:
                process.stop()
                raise
            try:
                record = self.store.replace_process(
                    endpoint, name, process.pid, process.port, str(process.log_path), changes,
                    environment=dict(server.environment_record),
                )
            except BaseException:
                process.stop()
                raise
            switched = datetime.now(UTC)
            self._await_front(record.endpoint_name, lambda view: _loaded_after(view, switched))
            # A reload that began before the switch is followed by another within a refresh.
            time.sleep(FRONT_REFRESH_SECONDS)
            old = deployment_process(current)
            if old is not None:
                old.stop()
            self._remove_old_runs(record)
            progress(f"{record.endpoint_name}/{record.name} now serves {record.model_uri}")
            return record

    def restart_deployment(
        self,
        name: str,
        endpoint: str,
        *,
        timeout_seconds: float | None = None,
        progress: Progress | None = None,
    ) -> Deployment:
        """Start a failed or stopped deployment again; returns it ready or failed."""
        current = self.store.get_deployment(endpoint, name)
        if current.state not in (State.FAILED, State.STOPPED):
            raise ResourceInUseError(
                f"Deployment {current.endpoint_name}/{current.name} is {current.state.value}: "
                "only a failed or stopped deployment can be restarted."
            )
        if in_progress(self._folder(current.endpoint_name, current.name)):
            raise ResourceInUseError(
                f"Deployment {current.endpoint_name}/{current.name} is being restarted already"
                f"{f' ({current.reason})' if current.reason else ''}: wait, then look again."
            )
        if current.state is State.FAILED:
            stop_deployment(self.store, current)  # a hung server may still hold its port
            current = self.store.get_deployment(endpoint, name)
        script = (
            bundle_script(self.settings.home, current.bundle, current.runtime)
            if current.bundle
            else None
        )
        server = self._server_config(current, script)
        with starting(self._folder(current.endpoint_name, current.name)):
            return self._launch(current, server, timeout_seconds, progress or _silent)

    def delete_deployment(
        self, name: str, endpoint: str, *, progress: Progress | None = None
    ) -> None:
        """Stop the deployment and delete it. Refused while it gets live or mirrored traffic."""
        try:
            current = self.store.get_deployment(endpoint, name)
        except (EndpointNotFoundError, DeploymentNotFoundError):
            return
        owner = self.store.get_endpoint(current.endpoint_name)
        label = f"{current.endpoint_name}/{current.name}"
        what = endpoint_share(owner, current.name)
        if what:
            raise ResourceInUseError(
                f"Deployment {label} still gets {what}. Move its traffic to other deployments "
                "(and remove the mirror) first, then delete it."
            )
        if current.state is State.PENDING:
            raise ResourceInUseError(f"Deployment {label} is being created: wait, then delete it.")
        stop_deployment(self.store, current)
        self.store.delete_deployment(current.endpoint_name, current.name, missing_ok=True)
        shutil.rmtree(self._folder(current.endpoint_name, current.name), ignore_errors=True)

    def list_deployments(self, endpoint: str | None = None) -> list[Deployment]:
        return self.store.list_deployments(endpoint)

    def get_deployment(self, name: str, endpoint: str) -> Deployment:
        return self.store.get_deployment(endpoint, name)

    def find_deployment(self, name: str) -> Deployment:
        """The one deployment called `name` across endpoints (for callers that give no endpoint).

        Raises DeploymentNotFoundError when there is none or several.
        """
        found = [d for d in self.store.list_deployments() if d.name.lower() == name.lower()]
        if len(found) == 1:
            return found[0]
        where = ", ".join(f"{d.endpoint_name}/{d.name}" for d in found)
        raise DeploymentNotFoundError(
            f"Several endpoints have a deployment named {name!r} ({where}): name the endpoint too."
            if found
            else f"No endpoint has a deployment named {name!r}."
        )

    def predict(
        self,
        deployment_name: str | None = None,
        inputs: Any = None,
        endpoint: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_seconds: float = invoke.DEFAULT_TIMEOUT_SECONDS,
    ) -> dict[str, Any] | list[Any]:
        """POST `inputs` to the endpoint's scoring URI with its primary key; traffic decides,
        or the `azureml-model-deployment` header sends it to `deployment_name`."""
        if endpoint is None:
            if deployment_name is None:
                raise EndpointNotFoundError("Name the endpoint (or a deployment) to call.")
            endpoint = self.find_deployment(deployment_name).endpoint_name
        record = self.store.get_endpoint(endpoint)
        if deployment_name is not None:
            runtime = self.store.get_deployment(endpoint, deployment_name).runtime
        else:
            runtimes = {d.runtime for d in self.store.list_deployments(endpoint)}
            runtime = runtimes.pop() if len(runtimes) == 1 else Runtime.AZUREML
        if record.scoring_uri is None or record.state is not State.READY:
            raise ScoringServerError(
                f"Endpoint {record.name!r} is {record.state.value}: its front does not run"
                f"{f' ({record.reason})' if record.reason else ''}. Restart Deploy Studio or "
                "the endpoint, then call it again."
            )
        key = self.store.get_keys(record.name).primary if record.auth_mode is AuthMode.KEY else None
        body = invoke.request_body(inputs, params, runtime)
        return invoke.post(record.scoring_uri, body, key, deployment_name, timeout_seconds)

    def get_logs(self, name: str, endpoint: str, lines: int = 100) -> str:
        """The last `lines` lines of the server log of the deployment's current start."""
        record = self.store.get_deployment(endpoint, name)
        return log_tail_inside(record.log_path, self.settings.home, lines)

    def restarts(self, name: str, endpoint: str) -> int:
        return restart_count(self.store.get_deployment(endpoint, name).log_path)

    def get_metrics(self, endpoint: str) -> dict[str, Any]:
        """What the endpoint's front counted (see DeploymentTarget.get_metrics)."""
        record = self.store.get_endpoint(endpoint)
        if record.state is not State.READY or record.front_port is None:
            raise EndpointFrontError(f"The endpoint's front is {record.state.value}: no metrics.")
        # Read for this request only: the key is needed to read the metrics, never kept.
        key = self.store.get_keys(record.name).primary if record.auth_mode is AuthMode.KEY else None
        view = invoke.front_view(f"http://{HOST}:{record.front_port}", key)
        if view is None:
            raise EndpointFrontError("The endpoint's front did not answer.")
        return view

    # -- recovery ----------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Square the store with the live processes (run when the app starts).

        Live, ready servers are adopted; dead ones are marked failed with the reason; dead
        fronts of endpoints with ready deployments are started again. Returns what was done.
        """
        return recovery.reconcile(
            self.store,
            self.root,
            lambda name: self._start_front(name, _silent),
            self.start_timeout_seconds,
        )

    def repair(self, endpoint: str | None = None) -> list[str]:
        """Square records (of `endpoint`, or all) with the processes; returns what was done."""
        return recovery.repair(
            self.store,
            self.root,
            lambda name: self._start_front(name, _silent),
            self.start_timeout_seconds,
            endpoint,
        )

    def stop_all(self) -> list[str]:
        """Stop every front and deployment server (records -> stopped); return what stopped."""
        return recovery.stop_all(self.store, self.root)

    # -- starting servers --------------------------------------------------------------------

    def _timeout(self, timeout_seconds: float | None) -> float:
        return self.start_timeout_seconds if timeout_seconds is None else timeout_seconds

    def _resolve(self, model_uri: str) -> str:
        """A URI that names one immutable model: an alias becomes the version it points at now."""
        reference = parse_model_uri(model_uri)
        if reference.kind is ModelUriKind.REGISTERED_ALIAS:
            version = self.registry.resolve_alias(reference.name, reference.alias)
            return registered_version_uri(reference.name, version)
        if reference.kind is ModelUriKind.REGISTERED_VERSION:
            self.registry.get_version(reference.name, reference.version)  # exists?
        if (
            reference.kind is ModelUriKind.LOCAL_FOLDER
            and not (reference.local_path / "MLmodel").is_file()
        ):
            raise DeploymentConfigError(f"'{reference.local_path}' has no MLmodel file.")
        return reference.uri

    def _server_config(self, record: Deployment, script: str | None) -> ServerConfig:
        model_path = local_model_path(record.model_uri, self.settings, self._registry)
        check_batching(record.settings, model_path)  # refused before any server starts
        return deployment_server_config(
            record, script, model_path, self.settings.home, int(self.start_timeout_seconds) + 60
        )

    def _spawn(self, record: Deployment, server: ServerConfig) -> ServerProcess:
        folder = new_run_folder(self._folder(record.endpoint_name, record.name))
        return start_deployment_server(server, folder)

    def _launch(
        self,
        record: Deployment,
        server: ServerConfig,
        timeout_seconds: float | None,
        progress: Progress,
    ) -> Deployment:
        """Start the record's server: -> starting (pid, port, log) -> ready, or failed with the
        reason and log tail and the process stopped. Never leaves a process no record names."""
        label = f"{record.endpoint_name}/{record.name}"
        progress(f"Starting {label} ({record.runtime} runtime, {record.model_uri})")
        try:
            process = self._spawn(record, server)
        except BaseException as exc:
            if record.state is not State.PENDING:
                raise  # a restart: the record keeps its failed or stopped state
            failed = move(self.store, record, State.FAILED, reason=_reason(exc))
            if isinstance(exc, Exception):
                return failed
            raise
        try:
            record = move(
                self.store,
                record,
                State.STARTING,
                pid=process.pid,
                port=process.port,
                log_path=str(process.log_path),
                environment=dict(server.environment_record),
            )
            if record.state is not State.STARTING:  # stopped by someone else meanwhile
                process.stop()
                return record
            seconds = wait_ready(process, self._timeout(timeout_seconds), progress, "server")
        except ScoringServerError as exc:
            process.stop()
            log = inference_server.log_tail(process.log_path)
            why = start_failure(str(exc), process.log_path, server.model_path,
                                server.environment is None)
            return move(self.store, record, State.FAILED, reason=why, log_tail=log)
        except BaseException:
            process.stop()
            move(self.store, record, State.FAILED, reason="Its start was interrupted.")
            raise
        record = move(self.store, record, State.READY)
        if record.state is not State.READY:
            process.stop()
            return record
        progress(f"{label} is ready on port {process.port} ({seconds:.1f} s)")
        self._remove_old_runs(record)
        self._ensure_front(record.endpoint_name, progress)
        self._await_front(
            record.endpoint_name,
            lambda view: view.get("deployments", {}).get(record.name, {}).get("state") == "ready",
        )
        return record

    def _remove_old_runs(self, record: Deployment) -> None:
        """Delete the folders of earlier starts: their servers are stopped by now."""
        if not record.log_path:
            return
        current = Path(record.log_path).parent
        for run in current.parent.iterdir():
            if run != current and run.name.isdigit():
                shutil.rmtree(run, ignore_errors=True)


def _loaded_after(view: dict[str, Any], moment: datetime) -> bool:
    loaded = view.get("config", {}).get("loaded_at")
    return loaded is not None and datetime.fromisoformat(loaded) > moment


def _checked_keys(config: Mapping[str, Any] | None, allowed: set[str], what: str) -> dict[str, Any]:
    config = dict(config or {})
    unknown = set(config) - allowed
    if unknown:
        raise DeploymentConfigError(
            f"Unknown setting(s) for {what}: {', '.join(sorted(unknown))}. Known: "
            f"{', '.join(sorted(allowed))}."
        )
    return config


def _with_changes(record: Deployment, changes: Mapping[str, Any]) -> Deployment:
    return replace(record, **changes)


def _jsonable(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.value if isinstance(v, Runtime) else v for k, v in changes.items()}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeployStudioError):
        return str(exc)
    return f"It could not be started ({type(exc).__name__}: {exc})."
