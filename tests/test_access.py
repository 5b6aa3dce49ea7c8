"""Roles: what each allows, the roles table as configured in secrets.toml, and who a session's
user is with and without sign-in."""

from __future__ import annotations

import tomllib

import pytest

from deploystudio.access import (
    MINIMUM_ROLE,
    Action,
    Role,
    RoleMap,
    allows,
    check,
    parse_roles,
    resolve_user,
)
from deploystudio.errors import AccessDeniedError, DeployStudioError, RolesConfigError

VIEWER_ONLY = {Action.BROWSE, Action.PREDICT}
BUILDER_ADDS = {Action.CUSTOMIZE, Action.BATCH}
DEPLOYER_ADDS = {Action.DEPLOY, Action.CHANGE_ENDPOINT, Action.SEE_KEYS, Action.AZURE}


def test_each_role_allows_its_actions_and_those_of_the_roles_below():
    assert set(MINIMUM_ROLE) == set(Action)  # every action has a rule
    expected = {
        Role.VIEWER: VIEWER_ONLY,
        Role.BUILDER: VIEWER_ONLY | BUILDER_ADDS,
        Role.DEPLOYER: VIEWER_ONLY | BUILDER_ADDS | DEPLOYER_ADDS,
    }
    for role, actions in expected.items():
        assert {a for a in Action if allows(role, a)} == actions, role


SECRETS = """
[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "not-a-real-secret"

[deploystudio.roles]
default = "builder"
"Ana@Example.com" = "deployer"
viewer = ["bob@example.com", "cy@example.com"]
"""


def test_the_roles_table_of_secrets_toml_takes_both_forms_and_ignores_email_case():
    roles = parse_roles(tomllib.loads(SECRETS)["deploystudio"]["roles"])
    assert roles.role_of("ana@example.com") is Role.DEPLOYER
    assert roles.role_of("ANA@example.COM ") is Role.DEPLOYER
    assert roles.role_of("cy@example.com") is Role.VIEWER
    assert roles.role_of("someone@else.org") is Role.BUILDER  # the default
    # No table at all: everyone signed in is a viewer until someone grants more.
    assert parse_roles(None) == RoleMap()
    assert parse_roles({}).role_of("ana@example.com") is Role.VIEWER


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (["ana@example.com"], r"must be a table of user emails to roles"),
        ({"ana@example.com": "admin"}, r"'ana@example.com' has role 'admin'; use one of viewer"),
        ({"default": "root"}, r"'default' has role 'root'"),
        ({"ana": "viewer"}, r"lists 'ana', which is not an email address"),
        ({"builder": "ana@example.com"}, r"builder must list emails"),
        ({"builder": ["ana@example.com", 3]}, r"lists 3, which is not an email"),
        (
            {"ana@example.com": "viewer", "deployer": ["ANA@example.com"]},
            r"'ANA@example.com' is given two roles \(viewer and deployer\)",
        ),
    ],
)
def test_a_wrong_roles_table_is_refused_naming_the_entry(table, message):
    with pytest.raises(RolesConfigError, match=message) as raised:
        parse_roles(table)
    assert isinstance(raised.value, DeployStudioError)
    assert "[deploystudio.roles]" in str(raised.value)


def test_without_sign_in_the_local_user_may_do_everything():
    roles = RoleMap(default=Role.VIEWER)
    user = resolve_user(False, "ana@example.com", roles, local_user="deploy")
    assert (user.name, user.role, user.signed_in) == ("deploy", Role.DEPLOYER, False)
    for action in Action:
        check(user, action)  # never raises


def test_with_sign_in_the_email_decides_and_a_missing_email_means_not_signed_in():
    roles = parse_roles({"ana@example.com": "deployer", "default": "viewer"})
    ana = resolve_user(True, "ana@example.com", roles, local_user="deploy")
    assert (ana.name, ana.role, ana.signed_in) == ("ana@example.com", Role.DEPLOYER, True)
    nobody = resolve_user(True, None, roles, local_user="deploy")
    assert not nobody.signed_in and nobody.role is Role.VIEWER
    bob = resolve_user(True, "bob@example.com", roles, local_user="deploy")
    check(bob, Action.PREDICT)
    with pytest.raises(AccessDeniedError) as raised:
        check(bob, Action.DEPLOY)
    message = str(raised.value)
    assert "You need the deployer role to deploy models" in message
    assert "bob@example.com is a viewer" in message and "[deploystudio.roles]" in message
