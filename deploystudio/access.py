"""Who may change what on a team server: three roles, the actions each allows, and the roles
table read from configuration.

Roles build on each other: a viewer browses, inspects and predicts; a builder may also make
things from models (register wrapped versions, save scoring bundles, run batch jobs); a deployer
may also deploy and change endpoints (traffic, keys, restarts, deletions) and Azure. Without
sign-in the app has one local user, who is a deployer.

The table (`[deploystudio.roles]` in `.streamlit/secrets.toml`) takes either form, or both:

    [deploystudio.roles]
    default = "viewer"                      # anyone signed in who is not listed
    "ana@example.com" = "deployer"          # one user
    builder = ["bob@example.com", "cy@example.com"]   # a role and its users
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from deploystudio.errors import AccessDeniedError, RolesConfigError

DEFAULT_KEY = "default"
ROLES_TABLE = "[deploystudio.roles]"


class Role(StrEnum):
    VIEWER = "viewer"
    BUILDER = "builder"
    DEPLOYER = "deployer"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Action(StrEnum):
    """What a page may be asked to do; the value completes "needs the X role to ..."."""

    BROWSE = "browse and inspect models"
    PREDICT = "run predictions"
    CUSTOMIZE = "register model versions and save scoring bundles"
    BATCH = "run batch jobs"
    DEPLOY = "deploy models"
    CHANGE_ENDPOINT = "change endpoints (traffic, keys, restarts, deletions)"
    SEE_KEYS = "see endpoint keys"
    AZURE = "deploy to Azure ML"


MINIMUM_ROLE: Mapping[Action, Role] = {
    Action.BROWSE: Role.VIEWER,
    Action.PREDICT: Role.VIEWER,
    Action.CUSTOMIZE: Role.BUILDER,
    Action.BATCH: Role.BUILDER,
    Action.DEPLOY: Role.DEPLOYER,
    Action.CHANGE_ENDPOINT: Role.DEPLOYER,
    # A key lets its holder call the endpoint without the app; whoever may change keys may see them.
    Action.SEE_KEYS: Role.DEPLOYER,
    Action.AZURE: Role.DEPLOYER,
}


def allows(role: Role, action: Action) -> bool:
    """True when `role` may do `action`."""
    return role.rank >= MINIMUM_ROLE[action].rank


@dataclass(frozen=True)
class RoleMap:
    """Roles by lower-cased email, and the role of a signed-in user who is not listed."""

    users: Mapping[str, Role] = field(default_factory=dict)
    # Viewer unless configured: turning sign-in on must not hand every account the deploy button.
    default: Role = Role.VIEWER

    def role_of(self, email: str | None) -> Role:
        return self.users.get((email or "").strip().lower(), self.default)


def _role(value: Any, where: str) -> Role:
    try:
        return Role(str(value).strip().lower()) if isinstance(value, str) else Role(value)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise RolesConfigError(
            f"{ROLES_TABLE}: {where} has role {value!r}; use one of {choices}."
        ) from None


def parse_roles(table: Mapping[str, Any] | None) -> RoleMap:
    """Read the roles table (see the module docstring); None or empty gives everyone viewer.

    Raises RolesConfigError naming the entry that is wrong: not a table, an unknown role, a
    user given two different roles, an entry that is not an email.
    """
    if table is None:
        return RoleMap()
    if not isinstance(table, Mapping):
        raise RolesConfigError(
            f"{ROLES_TABLE} must be a table of user emails to roles, not {table!r}. "
            'Write e.g. "ana@example.com" = "deployer" under [deploystudio.roles].'
        )
    users: dict[str, Role] = {}
    default = Role.VIEWER

    def assign(email: Any, role: Role, where: str) -> None:
        if not isinstance(email, str) or "@" not in email:
            raise RolesConfigError(
                f"{ROLES_TABLE}: {where} lists {email!r}, which is not an email address. "
                "Users are named by the email their sign-in provider gives."
            )
        key = email.strip().lower()
        if users.get(key, role) is not role:
            raise RolesConfigError(
                f"{ROLES_TABLE}: {email!r} is given two roles ({users[key].value} and "
                f"{role.value}). Keep one."
            )
        users[key] = role

    for key, value in table.items():
        if key == DEFAULT_KEY:
            default = _role(value, "'default'")
        elif key in set(Role):
            if not isinstance(value, list | tuple):
                raise RolesConfigError(
                    f'{ROLES_TABLE}: {key} must list emails, e.g. {key} = ["ana@example.com"], '
                    f"not {value!r}."
                )
            for email in value:
                assign(email, Role(key), f"{key!r}")
        else:
            assign(key, _role(value, repr(key)), repr(key))
    return RoleMap(users=users, default=default)


@dataclass(frozen=True)
class User:
    """Who is using the app and what they may do."""

    name: str
    role: Role
    signed_in: bool


def resolve_user(auth_configured: bool, email: str | None, roles: RoleMap, local_user: str) -> User:
    """The user of a session: with sign-in configured, the signed-in email (None: not signed in
    yet, who may do nothing but sign in) and its role; without, the single local user, who may
    do everything."""
    if not auth_configured:
        return User(name=local_user, role=Role.DEPLOYER, signed_in=False)
    if not email:
        return User(name="", role=Role.VIEWER, signed_in=False)
    return User(name=email, role=roles.role_of(email), signed_in=True)


def refusal(user: User, action: Action) -> str:
    """Why `user` may not do `action`, and what to do about it."""
    needed = MINIMUM_ROLE[action].value
    return (
        f"You need the {needed} role to {action.value}; {user.name} is a {user.role.value}. "
        f"Ask whoever runs this server to give you that role in {ROLES_TABLE} of "
        ".streamlit/secrets.toml."
    )


def check(user: User, action: Action) -> None:
    """Raise AccessDeniedError (with `refusal`'s message) unless `user` may do `action`."""
    if not allows(user.role, action):
        raise AccessDeniedError(refusal(user, action))
