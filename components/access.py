"""Sign-in and roles on the pages: who is using this session, and the checks before a change.

Sign-in is on when secrets.toml has Streamlit's `[auth]` section (st.login, OIDC); roles come
from its `[deploystudio.roles]` table (see deploystudio/access.py). A page calls `button_args`
to draw a change's button disabled, with a tooltip naming the role it needs, and `permitted`
when the button comes back clicked: a disabled button can still arrive clicked from an older
page, and the check must hold on the server whatever the browser sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from deploystudio.access import Action, User, allows, check, parse_roles, refusal, resolve_user
from deploystudio.deployment.actors import local_user
from deploystudio.errors import AccessDeniedError, DeployStudioError


def _secrets() -> Mapping[str, Any]:
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # no secrets.toml: a single local user
        return {}


def auth_configured() -> bool:
    """True when secrets.toml configures sign-in (Streamlit's `[auth]` section)."""
    return bool(_secrets().get("auth"))


def current_user() -> User:
    """This session's user. Raises RolesConfigError when the roles table is wrong."""
    secrets = _secrets()
    studio = secrets.get("deploystudio") or {}
    roles = parse_roles(studio.get("roles") if isinstance(studio, Mapping) else None)
    email = None
    if st.user.get("is_logged_in"):
        # Roles name users by email; a provider that gives none still signs the audit.
        email = str(st.user.get("email") or st.user.get("name") or "signed-in user")
    return resolve_user(bool(secrets.get("auth")), email, roles, local_user())


def allowed(action: Action) -> bool:
    return allows(current_user().role, action)


def button_args(action: Action, disabled: bool = False, help: str | None = None) -> dict[str, Any]:
    """`disabled` and `help` for the widget of a change: as given when this user may make it;
    else disabled, with a tooltip naming the role it needs."""
    user = current_user()
    if allows(user.role, action):
        return {"disabled": disabled, "help": help}
    return {"disabled": True, "help": refusal(user, action)}


def permitted(action: Action) -> bool:
    """The server-side check when a change's button comes back clicked: False (and an error on
    the page) when this user may not make it."""
    try:
        check(current_user(), action)
    except AccessDeniedError as exc:
        st.error(str(exc), icon=":material/lock:")
        return False
    return True


def sign_in_gate() -> None:
    """Stop the page until the user has signed in, when sign-in is configured; show who is
    signed in (with a sign-out button) in the sidebar."""
    try:
        user = current_user()  # checks the roles table once per run, before any page uses it
    except DeployStudioError as exc:
        st.error(str(exc), icon=":material/lock:")
        st.stop()
    if not auth_configured():
        return
    if not user.signed_in:
        st.title("Deploy Studio")
        st.write("This server asks you to sign in before you use it.")
        if st.button("Sign in", type="primary", icon=":material/login:", key="sign_in"):
            st.login()
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}** · role **{user.role.value}**")
        if st.button("Sign out", icon=":material/logout:", key="sign_out"):
            st.logout()
