"""What an endpoint's front decides for one request, without sockets: auth, target, mirror.

The front (front.py) keeps one `RoutingTable` built from the store and asks these functions what
to do; they are pure (the random source is passed in), so the rules are unit-tested directly.
The rules are Azure ML managed online endpoints': a key in `Authorization: Bearer <key>`, the
`azureml-model-deployment` header reaches any deployment whatever its weight, otherwise a
weighted choice; mirrored copies only come from requests that named no deployment.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deploystudio.deployment.adaptive_batching import NO_BATCHING, BatchSettings, batch_settings
from deploystudio.deployment.base import (
    AuthMode,
    Deployment,
    DeploymentState,
    Endpoint,
    EndpointKeys,
    Runtime,
)
from deploystudio.errors import DeployStudioError

DEPLOYMENT_HEADER = "azureml-model-deployment"
# Azure's default `request_settings.request_timeout_ms` for managed online deployments, and the
# largest value it accepts.
DEFAULT_REQUEST_TIMEOUT_MS = 5_000
MAX_REQUEST_TIMEOUT_MS = 180_000
TIMEOUT_SETTING = "request_timeout_ms"
REQUEST_SETTINGS = "request_settings"

# Paths of each runtime: Azure's inference server, MLflow's scoring server.
SCORE_PATHS = {Runtime.AZUREML: "/score", Runtime.MLFLOW: "/invocations"}
HEALTH_PATHS = {Runtime.AZUREML: "/", Runtime.MLFLOW: "/ping"}


@dataclass(frozen=True)
class DeploymentView:
    """What the front needs to know about one deployment."""

    name: str
    state: DeploymentState
    reason: str | None
    runtime: Runtime
    pid: int | None
    port: int | None
    log_path: str | None
    timeout_seconds: float
    # Server workers (instance_count): the batcher keeps one request in flight per worker.
    workers: int = 1
    batching: BatchSettings = NO_BATCHING

    @property
    def ready(self) -> bool:
        return self.state is DeploymentState.READY and self.port is not None

    @property
    def score_path(self) -> str:
        return SCORE_PATHS[self.runtime]

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HEALTH_PATHS[self.runtime]}"


@dataclass(frozen=True)
class RoutingTable:
    """One consistent view of an endpoint: auth, deployments, weights, mirror."""

    endpoint: str
    auth_mode: AuthMode
    # Lower-case name -> view: names are unique ignoring case, as in the store.
    deployments: Mapping[str, DeploymentView]
    # Deployment name -> live weight (0 included); sums to 100, or to 0 for no live traffic.
    weights: Mapping[str, int]
    mirror: tuple[str, int] | None
    # Both keys; never shown by repr so that a logged table leaks nothing.
    keys: tuple[bytes, ...] = field(default=(), repr=False)

    def find(self, name: str) -> DeploymentView | None:
        return self.deployments.get(name.lower())

    def describe(self) -> dict[str, Any]:
        """The table as JSON-able values, without keys."""
        return {
            "auth_mode": self.auth_mode.value,
            "traffic": dict(self.weights),
            "mirror": list(self.mirror) if self.mirror else None,
            "deployments": {
                view.name: {
                    "state": view.state.value,
                    "reason": view.reason,
                    "runtime": view.runtime.value,
                    "port": view.port,
                    "request_timeout_ms": round(view.timeout_seconds * 1000),
                    "max_batch_size": view.batching.max_batch_size,
                    "max_wait_ms": view.batching.max_wait_ms,
                }
                for view in self.deployments.values()
            },
        }


@dataclass(frozen=True)
class Route:
    """Where a request goes: a deployment, or the front's own error (status and message).

    `deployment` is also set with a 503, to name the deployment that could not answer.
    """

    deployment: DeploymentView | None
    status: int | None = None
    message: str | None = None
    mirror: DeploymentView | None = None

    @property
    def ok(self) -> bool:
        return self.status is None


def request_timeout_seconds(settings: Mapping[str, Any]) -> float:
    """A deployment's request timeout from its settings, as Azure names it.

    Accepts `request_timeout_ms` at the top level or under `request_settings` (the shape of
    Azure's deployment YAML); anything missing or not a whole number from 1 to 180,000 gives
    Azure's default of 5,000 ms.
    """
    nested = settings.get(REQUEST_SETTINGS)
    value = settings.get(TIMEOUT_SETTING)
    if value is None and isinstance(nested, Mapping):
        value = nested.get(TIMEOUT_SETTING)
    if isinstance(value, bool) or not isinstance(value, int):
        return DEFAULT_REQUEST_TIMEOUT_MS / 1000
    if not 1 <= value <= MAX_REQUEST_TIMEOUT_MS:
        return DEFAULT_REQUEST_TIMEOUT_MS / 1000
    return value / 1000


def build_table(
    endpoint: Endpoint, deployments: list[Deployment], keys: EndpointKeys | None
) -> RoutingTable:
    """The routing table for `endpoint` from its store records."""
    views = {
        d.name.lower(): DeploymentView(
            name=d.name,
            state=d.state,
            reason=d.reason,
            runtime=d.runtime,
            pid=d.pid,
            port=d.port,
            log_path=d.log_path,
            timeout_seconds=request_timeout_seconds(d.settings),
            workers=_whole(d.settings.get("instance_count"), 1),
            batching=_batching(d.settings),
        )
        for d in deployments
    }
    secrets = (
        (keys.primary.encode(), keys.secondary.encode())
        if keys is not None and endpoint.auth_mode is AuthMode.KEY
        else ()
    )
    return RoutingTable(
        endpoint=endpoint.name,
        auth_mode=endpoint.auth_mode,
        deployments=views,
        weights=dict(endpoint.traffic),
        mirror=endpoint.mirror,
        keys=secrets,
    )


def _whole(value: Any, default: int) -> int:
    whole = isinstance(value, int) and not isinstance(value, bool)
    return value if whole and value > 0 else default


def _batching(settings: Mapping[str, Any]) -> BatchSettings:
    """The deployment's batching; off when its stored values are not valid (the target checks
    them before it stores them, so only a hand-edited store gets here)."""
    try:
        return batch_settings(settings)
    except DeployStudioError:
        return NO_BATCHING


def is_authorized(table: RoutingTable, authorization: str | None) -> bool:
    """Whether `Authorization: Bearer <key>` holds one of the endpoint's keys (always, without
    key auth). Compared in constant time; an endpoint in key mode without keys admits nobody."""
    if table.auth_mode is not AuthMode.KEY:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    candidate = given.strip().encode()
    # Every key is compared, so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(candidate, key) for key in table.keys]
    return any(matches)


def route(table: RoutingTable, header: str | None, rng: random.Random) -> Route:
    """Choose the deployment for one request, and whether a copy goes to the mirror."""
    if header:
        view = table.find(header.strip())
        if view is None:
            known = ", ".join(repr(v.name) for v in table.deployments.values()) or "none"
            return Route(
                None,
                404,
                f"Endpoint {table.endpoint!r} has no deployment named {header.strip()!r} "
                f"(from the {DEPLOYMENT_HEADER} header). Its deployments: {known}.",
            )
        # Azure mirrors only requests that did not name a deployment.
        return _ready_or_503(view, None)
    live = [(name, weight) for name, weight in table.weights.items() if weight > 0]
    if not live:
        return Route(
            None,
            404,
            f"No deployment of endpoint {table.endpoint!r} has traffic. Give one a share of "
            f"the traffic, or name one in the {DEPLOYMENT_HEADER} header.",
        )
    names = [name for name, _ in live]
    chosen = rng.choices(names, weights=[weight for _, weight in live])[0]
    view = table.find(chosen)
    if view is None:  # a weight without its record: the store forbids it, so not reachable
        return Route(None, 404, f"Deployment {chosen!r} of {table.endpoint!r} does not exist.")
    return _ready_or_503(view, mirror_target(table, view, rng))


def mirror_target(
    table: RoutingTable, chosen: DeploymentView, rng: random.Random
) -> DeploymentView | None:
    """The deployment that gets a copy of this request, drawn with the mirror's probability."""
    if table.mirror is None:
        return None
    name, percent = table.mirror
    target = table.find(name)
    if target is None or target.name.lower() == chosen.name.lower():
        return None
    return target if rng.random() * 100 < percent else None


def not_ready_message(view: DeploymentView) -> str:
    """Why a deployment cannot answer, and what to do: its state and the stored reason."""
    if view.state is DeploymentState.READY:  # ready in the store but no port recorded
        return f"Deployment {view.name!r} has no server port recorded. Restart it."
    because = f" {view.reason.rstrip('.')}." if view.reason else ""
    advice = {
        DeploymentState.PENDING: "Wait until it is ready.",
        DeploymentState.STARTING: "Wait until it is ready.",
        DeploymentState.FAILED: "Restart it from the Endpoints page, or move its traffic.",
        DeploymentState.STOPPING: "Restart it, or move its traffic to another deployment.",
        DeploymentState.STOPPED: "Restart it, or move its traffic to another deployment.",
    }[view.state]
    return f"Deployment {view.name!r} is not ready: it is {view.state.value}.{because} {advice}"


def _ready_or_503(view: DeploymentView, mirror: DeploymentView | None) -> Route:
    if view.ready:
        return Route(view, mirror=mirror)
    return Route(view, 503, not_ready_message(view))
