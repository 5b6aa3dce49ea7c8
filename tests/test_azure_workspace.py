"""Workspace resolution (form > secrets.toml > env > config.json) and the connection test.

Azure is unreachable here: the real SDK talks to tests/azure_fake.py through MLClient's
`transport=`, and credentials are either a tiny TokenCredential (the credential boundary) or the
real DefaultAzureCredential failing without network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from deploystudio.deployment.azure import workspace as azure_workspace
from deploystudio.deployment.azure.workspace import AzureWorkspace, resolve_workspace
from deploystudio.errors import AzureWorkspaceError, UnsafePathError
from tests.azure_fake import FakeAzureML, StaticToken

TOKEN = "tok-SECRET-never-shown"


class RefusingCredential:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")


def _secrets(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "secrets.toml"
    lines = ["[azure]"] + [f'{k} = "{v}"' for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_each_value_comes_from_the_first_source_that_has_it(tmp_path: Path) -> None:
    secrets = _secrets(tmp_path, resource_group="rg-from-secrets")
    root = tmp_path / "project"
    (root / ".azureml").mkdir(parents=True)
    (root / ".azureml" / "config.json").write_text(
        json.dumps(
            {
                "subscription_id": "sub-from-config",
                "resource_group": "rg-from-config",
                "workspace_name": "ws-from-config",
            }
        )
    )
    workspace = resolve_workspace(
        {"subscription_id": "sub-from-form", "workspace_name": ""},
        environ={"AZUREML_WORKSPACE_NAME": "ws-from-env", "AZURE_RESOURCE_GROUP": "rg-env"},
        secrets_path=secrets,
        config_roots=[root],
    )
    assert (workspace.subscription_id, workspace.resource_group, workspace.workspace_name) == (
        "sub-from-form",
        "rg-from-secrets",
        "ws-from-env",
    )
    assert workspace.sources == {
        "subscription_id": "settings form",
        "resource_group": "secrets.toml",
        "workspace_name": "env AZUREML_WORKSPACE_NAME",
    }


def test_config_json_fills_the_rest_and_its_scope_form_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "Scope": "/subscriptions/sub-1/resourceGroups/rg-1/providers/"
                "Microsoft.MachineLearningServices/workspaces/ws-1"
            }
        )
    )
    workspace = resolve_workspace(
        environ={"AZURE_DEFAULTS_GROUP": "rg-az-cli"},
        secrets_path=tmp_path / "none.toml",
        config_roots=[tmp_path],
    )
    assert workspace.resource_group == "rg-az-cli"
    assert (workspace.subscription_id, workspace.workspace_name) == ("sub-1", "ws-1")
    assert workspace.sources["workspace_name"].startswith("config.json ")


def test_a_config_json_above_the_project_folder_is_not_used(tmp_path: Path) -> None:
    # MLClient.from_config would climb to parent folders; the studio does not.
    (tmp_path / "config.json").write_text(
        json.dumps({"subscription_id": "s", "resource_group": "r", "workspace_name": "w"})
    )
    (tmp_path / "project").mkdir()
    with pytest.raises(AzureWorkspaceError) as caught:
        resolve_workspace(
            environ={}, secrets_path=tmp_path / "none.toml", config_roots=[tmp_path / "project"]
        )
    message = str(caught.value)
    assert "subscription_id, resource_group, workspace_name missing" in message
    assert "AZURE_SUBSCRIPTION_ID" in message and "[azure]" in message


def test_a_config_path_outside_the_allowed_folders_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "config.json"
    outside.parent.mkdir()
    outside.write_text("{}")
    (tmp_path / "project").mkdir()
    with pytest.raises(UnsafePathError):
        resolve_workspace(
            environ={},
            secrets_path=tmp_path / "none.toml",
            config_roots=[tmp_path / "project"],
            config_path=outside,
        )


def test_a_config_json_without_the_keys_says_to_download_it_again(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"subscription_id": "s"}))
    with pytest.raises(AzureWorkspaceError, match=r"download the workspace's config\.json"):
        resolve_workspace(environ={}, secrets_path=tmp_path / "x.toml", config_roots=[tmp_path])


def test_broken_secrets_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text("[azure\nsubscription_id = 1")
    with pytest.raises(AzureWorkspaceError, match="Fix the TOML syntax"):
        resolve_workspace(environ={}, secrets_path=path)


@pytest.fixture
def fake() -> FakeAzureML:
    return FakeAzureML()


def _workspace(fake: FakeAzureML, name: str | None = None) -> AzureWorkspace:
    return AzureWorkspace(
        fake.subscription_id,
        fake.resource_group,
        name or fake.workspace_name,
        {"subscription_id": "settings form"},
    )


def test_connection_reads_the_workspace_and_names_the_credential(fake: FakeAzureML) -> None:
    report = azure_workspace.test_connection(_workspace(fake), StaticToken(TOKEN), transport=fake)
    assert report.ok, report.message
    assert report.credential == "StaticToken"
    assert report.location == fake.location
    assert report.mlflow_tracking_uri.startswith("azureml://")
    assert [r.route for r in fake.requests] == ["workspace"]
    # The token went to Azure in the Authorization header, and nowhere into the report.
    assert TOKEN not in repr(report)
    assert all("authorization" not in {k.lower() for k in r.headers} for r in fake.requests)


def test_default_credential_failure_lists_what_was_tried(
    fake: FakeAzureML, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import DefaultAzureCredential

    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no az, pwsh or azd to ask
    # Managed identity would probe the instance metadata address: the one network call.
    credential = DefaultAzureCredential(exclude_managed_identity_credential=True)
    report = azure_workspace.test_connection(_workspace(fake), credential, transport=fake)
    assert not report.ok
    tried = {attempt.name: attempt.reason for attempt in report.tried}
    assert "EnvironmentCredential" in tried and "AzureCliCredential" in tried
    assert "not found" in tried["AzureCliCredential"].lower()
    assert "failed to retrieve" not in tried[report.tried[-1].name]
    assert "az login" in report.message and "AzureCliCredential" in report.message
    assert fake.requests == []  # no token, so Azure is never called


def test_a_refusing_credential_gives_the_connection_error(fake: FakeAzureML) -> None:
    report = azure_workspace.test_connection(_workspace(fake), RefusingCredential(), transport=fake)
    assert not report.ok
    assert "No credential could sign in" in report.message
    assert "az login" in report.message


def test_403_and_missing_workspace_say_what_to_do(fake: FakeAzureML) -> None:
    fake.fail("workspace", 403, "AuthorizationFailed", "The client does not have authorization")
    denied = azure_workspace.test_connection(_workspace(fake), StaticToken(TOKEN), transport=fake)
    assert not denied.ok and "403" in denied.message and "AzureML Data Scientist" in denied.message

    missing = azure_workspace.test_connection(
        _workspace(fake, "ws-other"), StaticToken(TOKEN), transport=fake
    )
    assert not missing.ok
    assert "no workspace 'ws-other'" in missing.message


def test_401_from_azure_points_at_the_tenant(fake: FakeAzureML) -> None:
    fake.fail("workspace", 401, "InvalidAuthenticationToken", "The access token is invalid.")
    report = azure_workspace.test_connection(_workspace(fake), StaticToken(TOKEN), transport=fake)
    assert not report.ok and "401" in report.message and "AZURE_TENANT_ID" in report.message
