"""Traffic goes only to deployments that can serve it.

Azure refuses to route traffic to a deployment that has not succeeded; here a deployment that
is not ready (failed, stopped, still starting) may keep the share it has, or lose it, but gets
no more, and does not become the mirror target. Otherwise a split accepted for a broken
deployment answers 503 to its share of callers until someone notices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from deploystudio.deployment.base import Deployment, DeploymentState, Endpoint
from deploystudio.errors import TrafficError


def check_ready_for_traffic(
    endpoint: Endpoint,
    deployments_of: Callable[[str], list[Deployment]],
    weights: Any,
    mirror: tuple[str, int] | None,
) -> None:
    """Raise TrafficError when `weights` or `mirror` give a deployment that is not ready more
    than it gets now (`deployments_of(endpoint name)` lists them). Names that are not
    deployments, and weights that are not a mapping, are left to the store's own checks."""
    if not isinstance(weights, Mapping):
        return
    by_name = {d.name.lower(): d for d in deployments_of(endpoint.name)}
    now = {name.lower(): share for name, share in endpoint.traffic.items()}
    mirrored_now = endpoint.mirror[0].lower() if endpoint.mirror else None
    wanted = [(str(n), w, now.get(str(n).lower(), 0)) for n, w in weights.items()]
    # A malformed mirror is left to the store, which says what is wrong with it.
    new_mirror = isinstance(mirror, tuple | list) and len(mirror) == 2 and mirror[1]
    if new_mirror and str(mirror[0]).lower() != mirrored_now:
        wanted.append((str(mirror[0]), mirror[1], 0))
    for name, share, before in wanted:
        deployment = by_name.get(name.lower())
        if deployment is None or deployment.state is DeploymentState.READY:
            continue
        if isinstance(share, int) and share > before:
            why = f" ({deployment.reason})" if deployment.reason else ""
            raise TrafficError(
                f"Deployment {deployment.name!r} is {deployment.state.value}{why}: traffic goes "
                "only to ready deployments. Restart it (`deploystudio endpoint restart "
                f"{endpoint.name} --deployment {deployment.name}`) once the cause is fixed, "
                "or send that share to a ready deployment."
            )
