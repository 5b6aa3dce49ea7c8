"""The deployment target interface and the records every target returns.

Modelled on MLflow's `mlflow.deployments.BaseDeploymentClient`: the same create/update/delete/
list/get methods for endpoints and deployments plus `predict`, but returning frozen records
instead of loose dicts (`as_dict()` gives the dict an MLflow deployments plugin must return).
Beyond MLflow's verbs a target may offer keys, logs, traffic and mirror, metrics and restarts;
`capabilities` says which, so that a page shows a panel only for a target that has it, and a
method the target lacks raises `UnsupportedError` saying so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from deploystudio.errors import EndpointAuthError, UnsupportedError

# The two keys of an endpoint that uses keys, as regenerate_key names them.
KEY_NAMES = ("primary", "secondary")

# Receives one line of news at a time while a long call works (a page shows them, the CLI
# prints them).
Progress = Callable[[str], None]


class DeploymentState(StrEnum):
    """Lifecycle of a deployment, and of an endpoint's front process."""

    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


State = DeploymentState

# pending -> starting -> ready | failed, and stopping -> stopped. Restart goes failed/stopped ->
# starting; a health check that fails moves ready -> failed; a start can be cancelled
# (starting -> stopping); a failed record whose process still runs can be stopped; a process that
# will not stop leaves stopping -> failed. pending -> failed covers work that fails before any
# process exists (e.g. a model that cannot be resolved).
ALLOWED_TRANSITIONS: dict[DeploymentState, frozenset[DeploymentState]] = {
    State.PENDING: frozenset({State.STARTING, State.FAILED}),
    State.STARTING: frozenset({State.READY, State.FAILED, State.STOPPING}),
    State.READY: frozenset({State.STOPPING, State.FAILED}),
    State.FAILED: frozenset({State.STARTING, State.STOPPING}),
    State.STOPPING: frozenset({State.STOPPED, State.FAILED}),
    State.STOPPED: frozenset({State.STARTING}),
}

# States in which a process may be alive: records in them cannot be deleted.
RUNNING_STATES = frozenset({State.STARTING, State.READY, State.STOPPING})


class AuthMode(StrEnum):
    """How callers authenticate to an endpoint's scoring URI.

    Local endpoints take key or none (LOCAL_AUTH_MODES); Azure ML online endpoints take key,
    aml_token or aad_token (AZURE_AUTH_MODES): tokens are issued by Azure, which a local front
    cannot check.
    """

    KEY = "key"
    NONE = "none"
    AML_TOKEN = "aml_token"
    AAD_TOKEN = "aad_token"


LOCAL_AUTH_MODES = (AuthMode.KEY, AuthMode.NONE)
AZURE_AUTH_MODES = (AuthMode.KEY, AuthMode.AML_TOKEN, AuthMode.AAD_TOKEN)


def local_auth_mode(value: AuthMode | str) -> AuthMode:
    """`value` as a mode a local endpoint supports; EndpointAuthError says what to choose."""
    try:
        mode = AuthMode(value)
    except ValueError:
        mode = None
    if mode not in LOCAL_AUTH_MODES:
        choices = " or ".join(repr(m.value) for m in LOCAL_AUTH_MODES)
        azure_only = (
            " (Azure ML tokens are checked by Azure only: deploy to Azure for token auth)"
            if mode is not None
            else ""
        )
        raise EndpointAuthError(
            f"Local endpoints do not take auth mode {str(value)!r}{azure_only}: choose {choices}."
        )
    return mode


class Runtime(StrEnum):
    """Which server runs a deployment: Azure ML's inference server or MLflow's scoring server."""

    AZUREML = "azureml"
    MLFLOW = "mlflow"


def _jsonable(record: Endpoint | Deployment) -> dict[str, Any]:
    # Plain values, not enum members: MLflow's CLI prints these dicts with repr()
    # (`mlflow deployments list-endpoints`), where a member would read `<AuthMode.KEY: 'key'>`.
    values = asdict(record)
    return {
        k: v.isoformat() if isinstance(v, datetime) else v.value if isinstance(v, Enum) else v
        for k, v in values.items()
    }


@dataclass(frozen=True)
class Endpoint:
    """One scoring URI in front of an endpoint's deployments. Never carries the keys."""

    name: str
    auth_mode: AuthMode
    scoring_uri: str | None
    front_pid: int | None
    front_port: int | None
    state: DeploymentState
    reason: str | None
    # Every deployment of the endpoint with its live weight (0 included), like Azure's `get`.
    traffic: dict[str, int]
    # (deployment, percent) receiving a copy of live requests, or None.
    mirror: tuple[str, int] | None
    created_at: datetime
    updated_at: datetime
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict with a 'name' key, as MLflow deployment plugins return."""
        values = _jsonable(self)
        values["mirror"] = list(self.mirror) if self.mirror else None
        return values


@dataclass(frozen=True)
class Deployment:
    """One model served by its own process behind an endpoint."""

    endpoint_name: str
    name: str
    model_uri: str
    runtime: Runtime
    # Scoring bundle as "name:version" (azureml runtime with a custom score.py), or None.
    bundle: str | None
    state: DeploymentState
    reason: str | None
    # Last lines of the server log, kept when a start fails.
    log_tail: str | None
    pid: int | None
    port: int | None
    log_path: str | None
    created_at: datetime
    updated_at: datetime
    # Instance count, timeouts, names (never values) of environment variables, ...
    settings: dict[str, Any] = field(default_factory=dict)
    # The Python environment its server last started in: "mode" (auto, model, app), "key" (the
    # model environment's, None for the app's), "python", "python_version", "reason". None
    # when the target does not say (Azure) or the server never started.
    environment: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict with a 'name' key, as MLflow deployment plugins return."""
        return _jsonable(self)

    @property
    def environment_label(self) -> str:
        """Which environment its server runs in, in words: the model environment's key and
        Python, or the app's; "not recorded" for a server started before records said so."""
        env = self.environment or {}
        if not env:
            return "not recorded"
        python = f"Python {env.get('python_version') or '?'}, {env.get('python') or '?'}"
        if env.get("key"):
            return f"model environment {env['key']} ({python})"
        return f"the app's environment ({python})"


@dataclass(frozen=True)
class EndpointKeys:
    """An endpoint's two keys. `repr`/`str` mask them so they never reach a log by accident."""

    primary: str
    secondary: str

    def __repr__(self) -> str:
        return "EndpointKeys(primary='***', secondary='***')"

    __str__ = __repr__


@dataclass(frozen=True)
class AuditEntry:
    """One change: who made it, when, to what, and the value before and after (JSON values)."""

    id: int
    at: datetime
    actor: str
    action: str
    # "endpoint" or "endpoint/deployment".
    target: str
    field: str | None
    previous: Any
    new: Any


class Capability(StrEnum):
    """What a target may offer beyond endpoints, deployments and `predict`."""

    KEYS = "keys"  # get_keys, regenerate_key
    LOGS = "logs"  # get_logs
    TRAFFIC = "traffic"  # set_traffic's live weights
    MIRROR = "mirror"  # set_traffic's mirrored share
    METRICS = "metrics"  # get_metrics
    RESTART = "restart"  # restart_deployment
    HISTORY = "history"  # history, note


class DeploymentTarget(ABC):
    """Where deployments run (local processes, Azure ML). A new target is one new module.

    Methods raise `DeployStudioError` subclasses for anything a user can cause or fix:
    InvalidNameError, NameTakenError, EndpointNotFoundError, DeploymentNotFoundError,
    TrafficError, ResourceInUseError, and target-specific errors for failed starts.

    Endpoint config keys: "auth_mode" ("key" | "none", create only), "description", "tags",
    "traffic" ({deployment: weight}, summing to 100 or all 0), "mirror" ([deployment, percent]).
    Deployment config keys: "runtime" ("azureml" | "mlflow"), "bundle" ("name:version"),
    "settings" (instance count, timeouts, environment variable names).
    """

    # Overridden by each target: what it offers beyond the abstract methods.
    capabilities: frozenset[Capability] = frozenset()

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def _unsupported(self, capability: Capability) -> UnsupportedError:
        return UnsupportedError(
            f"{type(self).__name__} has no {capability.value}: that panel is not available for "
            "this target."
        )

    @abstractmethod
    def create_endpoint(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        """Create an endpoint and block until it can take deployments.

        Returns the endpoint record (state ready, or failed with the reason).
        Raises InvalidNameError, NameTakenError.
        """

    @abstractmethod
    def update_endpoint(
        self,
        endpoint: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        """Change description, tags, traffic or mirror; all or nothing.

        Returns the updated record. Raises EndpointNotFoundError, TrafficError.
        """

    @abstractmethod
    def delete_endpoint(self, endpoint: str, *, progress: Progress | None = None) -> None:
        """Stop the endpoint's deployments and front, then delete its records.

        Idempotent: deleting an endpoint that does not exist does nothing. Returns None.
        """

    @abstractmethod
    def list_endpoints(self) -> list[Endpoint]:
        """Return every endpoint of this target, sorted by name."""

    @abstractmethod
    def get_endpoint(self, endpoint: str) -> Endpoint:
        """Return one endpoint. Raises EndpointNotFoundError."""

    @abstractmethod
    def create_deployment(
        self,
        name: str,
        model_uri: str,
        endpoint: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Deployment:
        """Deploy `model_uri` under `endpoint` with no traffic, and block until it answers.

        Returns the deployment record: ready, or failed with the reason and the log tail (a failed
        start never leaves a half-written record, and never raises). Raises InvalidNameError,
        NameTakenError, EndpointNotFoundError, DeploymentConfigError for settings refused before
        anything starts.
        """

    @abstractmethod
    def update_deployment(
        self,
        name: str,
        endpoint: str,
        model_uri: str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Deployment:
        """Serve a new model URI and/or config; block until done.

        A deployment that is not ready is changed and started again: returns it ready, or
        failed with the reason. A ready deployment keeps serving while the new model starts
        (no gap): when the new one does not start, the deployment is left serving the old one
        unchanged, and ScoringServerError (local) or an AzureOperationError says why, since no
        record changed to say it. Raises DeploymentNotFoundError, ResourceInUseError while it
        is being started or stopped.
        """

    @abstractmethod
    def delete_deployment(
        self, name: str, endpoint: str, *, progress: Progress | None = None
    ) -> None:
        """Stop the deployment and delete its record. Idempotent. Returns None.

        Raises ResourceInUseError while the deployment still gets live or mirrored traffic.
        """

    @abstractmethod
    def list_deployments(self, endpoint: str | None = None) -> list[Deployment]:
        """Return the deployments of `endpoint` (all endpoints when None), sorted by name."""

    @abstractmethod
    def get_deployment(self, name: str, endpoint: str) -> Deployment:
        """Return one deployment. Raises EndpointNotFoundError, DeploymentNotFoundError."""

    @abstractmethod
    def predict(
        self,
        deployment_name: str | None = None,
        inputs: Any = None,
        endpoint: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | list[Any]:
        """Score `inputs` on the endpoint (traffic decides) or on one named deployment.

        Returns the server's decoded JSON answer: a dict (MLflow's {"predictions": ...}) or a list
        (Azure's bare list). Raises PayloadError for an input the model refuses, PredictionError
        when the model fails, EndpointNotFoundError, DeploymentNotFoundError.
        """

    # -- what a target may offer (see `capabilities`) ----------------------------------------

    def get_keys(self, endpoint: str) -> EndpointKeys:
        """The endpoint's two keys (masked in repr). Raises EndpointAuthError when it does not
        use keys. Capability KEYS."""
        raise self._unsupported(Capability.KEYS)

    def regenerate_key(
        self, endpoint: str, which: str, *, progress: Progress | None = None
    ) -> EndpointKeys:
        """Replace the "primary" or "secondary" key; returns both once the endpoint takes the
        new one. Capability KEYS."""
        raise self._unsupported(Capability.KEYS)

    def get_logs(self, name: str, endpoint: str, lines: int = 100) -> str:
        """The last `lines` lines of the deployment's server log. Capability LOGS."""
        raise self._unsupported(Capability.LOGS)

    def set_traffic(
        self,
        endpoint: str,
        traffic: Mapping[str, int],
        mirror: tuple[str, int] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        """Set the live weights ({deployment: percent}, summing to 100 or all 0) and the mirror
        ((deployment, percent), None for none) at once. Raises TrafficError. Capabilities
        TRAFFIC and MIRROR."""
        raise self._unsupported(Capability.TRAFFIC)

    def restarts(self, name: str, endpoint: str) -> int:
        """How many times the target restarted the deployment's server by itself (after failed
        health checks) since it was last started; 0 where the target does not say."""
        return 0

    def history(self, endpoint: str, limit: int = 100) -> list[AuditEntry]:
        """The endpoint's newest `limit` changes and events, newest first. Capability
        HISTORY."""
        raise self._unsupported(Capability.HISTORY)

    def note(
        self, endpoint: str, action: str, subject: str, new: Any = None, *, actor: str | None = None
    ) -> None:
        """Add an event that changes no record to the endpoint's history (e.g. a direct test
        call, which a safe rollout looks for), signed by `actor` when given. Capability
        HISTORY."""
        raise self._unsupported(Capability.HISTORY)

    def get_metrics(self, endpoint: str) -> dict[str, Any]:
        """Requests, errors and latency per deployment, as the endpoint counts them:
        {"uptime_seconds", "requests", "deployments": {name: {"requests", "mirrored",
        "errors_4xx", "errors_5xx", "latency_ms": {"p50", "p90", "p99"}, "state"}}}. Raises a
        DeployStudioError saying why there are none. Capability METRICS."""
        raise self._unsupported(Capability.METRICS)

    def restart_deployment(
        self, name: str, endpoint: str, *, progress: Progress | None = None
    ) -> Deployment:
        """Start a failed or stopped deployment again; returns it ready, or failed with the
        reason. Capability RESTART."""
        raise self._unsupported(Capability.RESTART)
