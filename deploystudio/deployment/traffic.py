"""Azure's traffic rules for an online endpoint, in one place for every target.

Live traffic: whole percentages of the endpoint's deployments that sum to 100, or all 0 (no
live traffic). Mirrored traffic: at most one deployment, at most 50 %, and not one that gets
live traffic. A deployment that gets live or mirrored traffic cannot be deleted.

The deployment store checks them inside its write transaction (on the deployments it reads
there), the local target before it stops a deployment, and the Azure specs before Azure sees a
change; all raise the same TrafficError wording.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from deploystudio.deployment.base import Endpoint
from deploystudio.errors import TrafficError

MAX_MIRROR_PERCENT = 50  # Azure's cap on mirrored traffic


def check_percent(what: str, value: Any, maximum: int) -> None:
    """TrafficError unless `value` is a whole number from 0 to `maximum`."""
    # bool is an int subclass; True would silently mean 1 %.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise TrafficError(f"{what} must be a whole number from 0 to {maximum}, not {value!r}.")


def checked_traffic(
    deployments: Iterable[str],
    weights: Mapping[str, int],
    mirror: tuple[str, int] | None = None,
    label: str = "the endpoint",
) -> tuple[dict[str, int], tuple[str, int] | None]:
    """The live weights and the mirror by the deployments' own names (matched regardless of
    case), after checking them against Azure's rules. Deployments not in `weights` get 0;
    a mirror of 0 % is no mirror. `label` names the endpoint in messages. Raises TrafficError
    saying which rule was broken."""
    if not isinstance(weights, Mapping):
        raise TrafficError(f"Traffic must map deployment names to percentages, not {weights!r}.")
    names = {name.lower(): name for name in deployments}
    listed = ", ".join(repr(name) for name in names.values()) or "none"
    checked: dict[str, int] = {}
    for given, weight in weights.items():
        name = names.get(given.lower()) if isinstance(given, str) else None
        if name is None:
            raise TrafficError(
                f"Cannot send traffic to {given!r}: {label} has no such deployment "
                f"(its deployments: {listed})."
            )
        if name in checked:
            raise TrafficError(f"Deployment {name!r} is given traffic twice.")
        check_percent(f"Traffic for {name!r}", weight, 100)
        checked[name] = weight
    total = sum(checked.values())
    if total not in (0, 100):
        raise TrafficError(
            f"Traffic weights of {label} sum to {total}%: they must sum to 100 "
            "(or all be 0 to send no live traffic)."
        )
    if mirror is None:
        return checked, None
    if not isinstance(mirror, tuple | list) or len(mirror) != 2:
        raise TrafficError(
            f"The mirror must be (deployment, percent), not {mirror!r}: Azure mirrors to "
            "one deployment only."
        )
    given, percent = mirror
    check_percent("The mirror percentage", percent, MAX_MIRROR_PERCENT)
    if percent == 0:
        return checked, None
    name = names.get(given.lower()) if isinstance(given, str) else None
    if name is None:
        raise TrafficError(
            f"Cannot mirror traffic to {given!r}: {label} has no such deployment "
            f"(its deployments: {listed})."
        )
    if checked.get(name):
        raise TrafficError(
            f"Deployment {name!r} gets {checked[name]}% of live traffic, so it cannot also get "
            "mirrored traffic (Azure: a deployment gets live or mirrored traffic, not both). "
            "Mirror to a deployment with 0% live traffic."
        )
    return checked, (name, percent)


def single_mirror(mirror_traffic: Mapping[str, int] | None) -> tuple[str, int] | None:
    """Azure's `mirror_traffic` mapping as (deployment, percent), or None when nothing is
    mirrored; TrafficError when it names more than one deployment."""
    mirrored = [(name, percent) for name, percent in (mirror_traffic or {}).items() if percent]
    if len(mirrored) > 1:
        raise TrafficError(
            f"Mirror traffic names {len(mirrored)} deployments: Azure mirrors to one only."
        )
    return mirrored[0] if mirrored else None


def traffic_share(
    deployment: str, weights: Mapping[str, int], mirrored: Mapping[str, int]
) -> str | None:
    """What traffic `deployment` still gets ("30% of live traffic", "mirrored traffic"), or
    None when it gets none and may be deleted. `mirrored` maps deployments to mirror percents
    (Azure's mirror_traffic)."""
    key = deployment.lower()
    live = {name.lower(): weight for name, weight in weights.items()}.get(key, 0)
    if live:
        return f"{live}% of live traffic"
    if {name.lower(): percent for name, percent in mirrored.items()}.get(key, 0):
        return "mirrored traffic"
    return None


def endpoint_share(endpoint: Endpoint, deployment: str) -> str | None:
    """traffic_share of `deployment` on one of our endpoint records."""
    mirrored = dict([endpoint.mirror]) if endpoint.mirror else {}
    return traffic_share(deployment, endpoint.traffic, mirrored)
