"""Live traffic and mirror of one endpoint, edited with sliders and applied in one change.

Weights always sum to 100: with two deployments one slider moves both, with more the user
sets all but one and that one takes the remainder (a total over 100 is refused here). The
mirror is checked by the domain (at most 50%, not a deployment with live traffic): its message
is shown as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import streamlit as st

from components import access, endpoint_changes, services
from deploystudio.access import Action
from deploystudio.deployment.base import Capability, DeploymentTarget, Endpoint, Progress
from deploystudio.errors import TrafficError

NO_MIRROR = "(no mirror)"


def remainder_weights(values: Mapping[str, int], remainder: str) -> dict[str, int]:
    """`values` as set, and `remainder` gets what is left of 100. Raises TrafficError over 100."""
    total = sum(values.values())
    if total > 100:
        raise TrafficError(
            f"The sliders add up to {total}%, over 100%: lower some, so that {remainder} gets "
            "the rest."
        )
    return {**values, remainder: 100 - total}


def editor_key(endpoint: Endpoint) -> str:
    """Widget keys change with the stored traffic, so the sliders start again from the store
    after any change (this user's, another user's, the CLI's)."""
    stored = repr((sorted(endpoint.traffic.items()), endpoint.mirror))
    return f"traffic_{endpoint.name}_{hashlib.sha256(stored.encode()).hexdigest()[:8]}"


def render_traffic_editor(endpoint: Endpoint) -> None:
    target = services.endpoint_target()
    if not target.supports(Capability.TRAFFIC):
        st.info("This target does not split traffic between deployments.")
        return
    names = list(endpoint.traffic)
    if not names:
        st.info("This endpoint has no deployments yet: deploy a model to it first.")
        return
    key = editor_key(endpoint)
    try:
        weights = _weights(endpoint, names, key)
    except TrafficError as exc:
        st.error(str(exc))
        weights = None
    # Without the mirror capability the mirror stays as it is (none).
    mirror = _mirror(endpoint, names, key) if target.supports(Capability.MIRROR) else None
    apply_args = access.button_args(Action.CHANGE_ENDPOINT, disabled=weights is None)
    if st.button("Apply traffic", type="primary", key=f"{key}_apply", **apply_args):
        endpoint_changes.submit(
            endpoint.name,
            "Set traffic",
            lambda progress: _apply(target, endpoint.name, weights, mirror, progress),
        )


def _weights(endpoint: Endpoint, names: list[str], key: str) -> dict[str, int]:
    current = endpoint.traffic
    if len(names) == 1:
        live = st.toggle(
            f"Send all live traffic to {names[0]}", value=current[names[0]] == 100, key=f"{key}_on"
        )
        return {names[0]: 100 if live else 0}
    if len(names) == 2:
        first, second = names
        start = current[second] if sum(current.values()) else 0
        share = st.slider(
            f"Share of live traffic: {first} ← → {second}",
            0,
            100,
            start,
            key=f"{key}_split",
            help="One slider for both: the two shares always add up to 100%.",
        )
        st.caption(f"**{first}** {100 - share}% · **{second}** {share}%")
        return {first: 100 - share, second: share}
    by_share = sorted(names, key=lambda n: -current[n])
    remainder = st.selectbox(
        "Takes the remainder",
        names,
        index=names.index(by_share[0]),
        key=f"{key}_remainder",
        help="Set the others with their sliders; this deployment gets what is left of 100%.",
    )
    values = {
        name: st.slider(name, 0, 100, current[name], key=f"{key}_weight_{name}")
        for name in names
        if name != remainder
    }
    weights = remainder_weights(values, remainder)
    st.caption(f"**{remainder}** gets the remaining {weights[remainder]}%.")
    return weights


def _mirror(endpoint: Endpoint, names: list[str], key: str) -> list | None:
    current = endpoint.mirror
    left, right = st.columns(2)
    options = [NO_MIRROR, *names]
    target = left.selectbox(
        "Mirror to",
        options,
        index=options.index(current[0]) if current else 0,
        key=f"{key}_mirror_to",
        help="A copy of a share of live requests goes to this deployment; its answers are "
        "only counted, never returned. It must get no live traffic.",
    )
    percent = right.number_input(
        "Mirror %",
        min_value=0,
        max_value=100,
        value=current[1] if current else 10,
        step=5,
        key=f"{key}_mirror_percent",
        help="At most 50% (Azure's limit).",
    )
    return None if target == NO_MIRROR else [target, int(percent)]


def _apply(
    target: DeploymentTarget,
    name: str,
    weights: dict[str, int],
    mirror: list | None,
    progress: Progress,
) -> None:
    live_mirror = (mirror[0], int(mirror[1])) if mirror else None
    endpoint = target.set_traffic(name, weights, live_mirror, progress=progress)
    progress(f"Traffic of {name}: {endpoint.traffic}, mirror {endpoint.mirror or 'none'}")
