"""An endpoint's keys: hidden until revealed, and regenerated after a confirmation.

Keys are read from the target on the run that shows them and never kept in session state (the
toggle remembers only whether to show them).
"""

from __future__ import annotations

import streamlit as st

from components import access, endpoint_changes, services
from deploystudio.access import Action
from deploystudio.deployment.base import (
    KEY_NAMES,
    AuthMode,
    Capability,
    DeploymentTarget,
    Endpoint,
    Progress,
)


def reveal_key(endpoint: str) -> str:
    """The session-state key of the "Show keys" toggle (a bool, never a key value)."""
    return f"keys_shown_{endpoint}"


def keys_revealed(endpoint: Endpoint) -> bool:
    shown = bool(st.session_state.get(reveal_key(endpoint.name)))
    return shown and endpoint.auth_mode is AuthMode.KEY and access.allowed(Action.SEE_KEYS)


def render_keys(endpoint: Endpoint) -> None:
    if endpoint.auth_mode is not AuthMode.KEY:
        st.info("This endpoint takes calls without a key (auth mode 'none').")
        return
    target = services.endpoint_target()
    if not target.supports(Capability.KEYS):
        st.info("This target does not give out its endpoints' keys here.")
        return
    st.toggle(
        "Show keys",
        key=reveal_key(endpoint.name),
        **access.button_args(Action.SEE_KEYS, help="Keys stay hidden until shown."),
    )
    if keys_revealed(endpoint):
        keys = target.get_keys(endpoint.name)
        left, right = st.columns(2)
        with left:
            st.caption("Primary key")
            st.code(keys.primary, language=None)
        with right:
            st.caption("Secondary key")
            st.code(keys.secondary, language=None)
    else:
        st.caption("Primary and secondary keys: `••••••••` (hidden).")
    key = f"keys_{endpoint.name}"
    which = st.radio("Regenerate", list(KEY_NAMES), horizontal=True, key=f"{key}_which", index=None)
    if which is None:
        return
    confirmed = st.checkbox(
        f"The current {which} key stops working at once: callers that use it get 401 until "
        "they switch to the new one.",
        key=f"{key}_confirm",
    )
    if st.button(
        f"Regenerate the {which} key",
        icon=":material/key:",
        key=f"{key}_regenerate",
        **access.button_args(Action.CHANGE_ENDPOINT, disabled=not confirmed),
    ):
        endpoint_changes.submit(
            endpoint.name,
            f"Regenerate the {which} key",
            lambda progress: _regenerate(target, endpoint.name, which, progress),
        )


def _regenerate(target: DeploymentTarget, endpoint: str, which: str, progress: Progress) -> None:
    # Returns nothing: the operation keeps its result in memory, and keys belong in the target.
    target.regenerate_key(endpoint, which, progress=progress)
    progress(f"The {which} key of {endpoint} was replaced; the old one no longer works.")
