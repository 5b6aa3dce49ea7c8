"""The Azure ML page through AppTest: workspace settings with their sources, the connection
test with the real DefaultAzureCredential and no network, export for CI, and the deploy form
reaching AzureTarget through the operation runner.

The page builds its AzureTarget with the real credential and network transport: offline, a
deploy fails to sign in and must say so. Through the test seam of components/services.py
(`connection_for_tests`), a deploy goes through the form to the fake ARM transport and the page
shows its final state.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from azure.ai.ml import load_online_deployment, load_online_endpoint
from streamlit.testing.v1 import AppTest

from components import services
from components.azure_export_form import RESULT_KEY
from components.azure_fields import MODEL_IN_WORKSPACE, MODEL_LABELS, MODEL_REGISTER, MODEL_UPLOAD
from deploystudio.deployment.azure.model_registration import register_model
from deploystudio.deployment.azure.workspace import AzureWorkspace, ml_client
from deploystudio.prediction import local_model_path
from tests.azure_fake import FakeAzureML, StaticToken
from tests.conftest import REPO_ROOT
from tests.page_support import fresh_caches, pages_using, rerun  # noqa: F401 (fixture)
from tests.test_azure_export import assert_readme_names_only_exported_files

PAGE = str(REPO_ROOT / "views" / "azure.py")
RUN_TIMEOUT = 120
AZURE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555",
    "AZURE_RESOURCE_GROUP": "rg-from-env",
    "AZUREML_WORKSPACE_NAME": "ws-from-env",
}
# Credentials DefaultAzureCredential could otherwise find on a developer's machine.
CREDENTIAL_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("azure-page")


@pytest.fixture(scope="module")
def page_settings(home, settings, seeded):
    """Point the pages at this module's data folder and the session's seeded registry."""
    with pages_using(home, settings) as page_settings:
        try:
            yield page_settings
        finally:
            for operation in services.local_endpoints().operations.running():
                services.local_endpoints().operations.wait(operation.id, 60)
            services._local_endpoints.clear()
            services._azure_target.clear()


@pytest.fixture
def offline_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AZURE_ENV.items():
        monkeypatch.setenv(name, value)
    for name in CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    # No az, pwsh or azd to ask: each credential of the chain fails here, as offline.
    monkeypatch.setenv("PATH", "/nonexistent")


def open_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=RUN_TIMEOUT)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return rerun(at)


def page_text(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "error", "warning", "success", "code")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def test_settings_are_prefilled_with_their_source_and_the_form_wins(
    page_settings, offline_azure
) -> None:
    at = open_page()
    assert at.text_input(key="azure_subscription_id").value == AZURE_ENV["AZURE_SUBSCRIPTION_ID"]
    assert at.text_input(key="azure_workspace_name").value == "ws-from-env"
    captions = [c.value for c in at.caption]
    assert "From env AZURE_SUBSCRIPTION_ID." in captions
    assert "From env AZUREML_WORKSPACE_NAME." in captions

    at.text_input(key="azure_workspace_name").set_value("ws-typed")
    at.button(key="azure_workspace_submit").click()
    rerun(at)
    captions = [c.value for c in at.caption]
    assert "From the settings form." in captions
    assert any("'ws-typed' (from settings form)" in c for c in captions)
    assert any("'rg-from-env' (from env AZURE_RESOURCE_GROUP)" in c for c in captions)


def test_a_missing_value_says_where_to_set_it(page_settings, monkeypatch) -> None:
    for names in ("AZURE_SUBSCRIPTION_ID", "AZUREML_ARM_SUBSCRIPTION"):
        monkeypatch.delenv(names, raising=False)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws")
    at = open_page()
    assert "Not set anywhere yet." in [c.value for c in at.caption]
    assert any("subscription_id missing" in w.value for w in at.warning)


def test_connection_failure_lists_the_credentials_tried_and_shows_no_token(
    page_settings, offline_azure
) -> None:
    at = open_page()
    started = time.monotonic()
    at.button(key="azure_test_connection").click()
    rerun(at)
    assert time.monotonic() - started < 60
    errors = [e.value for e in at.error]
    assert any("No credential could sign in" in e and "az login" in e for e in errors), errors
    tried = at.dataframe[0].value
    assert "AzureCliCredential" in set(tried["Credential"])
    text = page_text(at)
    assert "Bearer" not in text and "eyJ" not in text  # no token or JWT anywhere


def test_export_writes_loadable_yaml_and_offers_a_zip(page_settings, offline_azure) -> None:
    at = open_page({"model": "iris-classifier", "version": "1"})
    # Nothing assumes the workspace has our version 1: the files go, Azure numbers them.
    model_in_azure = at.radio(key="azure_export_model_in_azure")
    assert model_in_azure.value == MODEL_UPLOAD
    assert model_in_azure.options == [MODEL_LABELS[m] for m in MODEL_LABELS]
    assert not any("azureml:iris-classifier:1" in c.label for c in at.checkbox)
    at.text_input(key="azure_export_endpoint__iris-classifier").set_value("iris-ci")
    at.number_input(key="azure_export_instance_count").set_value(2)
    at.button(key="azure_export_submit").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    exports = sorted((page_settings.home / "exports").iterdir())
    assert len(exports) == 1 and exports[0].name.startswith("iris-ci-blue-")
    folder = exports[0]
    endpoint = load_online_endpoint(str(folder / "endpoint.yml"))
    deployment = load_online_deployment(str(folder / "deployment.yml"))
    assert endpoint.name == "iris-ci" and endpoint.auth_mode == "key"
    assert deployment.endpoint_name == "iris-ci" and deployment.instance_count == 2
    assert deployment.model.name == "iris-classifier" and deployment.model.version is None
    assert (folder / "model" / "MLmodel").is_file()
    # Every file the README's commands name is in the folder, request.json included.
    result = at.session_state[RESULT_KEY]
    assert_readme_names_only_exported_files(result)
    assert "request.json" in result.files
    shown = next(c.value for c in at.code)
    assert "az ml online-endpoint create -f endpoint.yml" in shown
    assert "--request-file request.json" in shown

    download = at.get("download_button")
    assert len(download) == 1
    # The zip holds the same folder the page wrote.
    from components.azure_export_form import zip_bytes

    with zipfile.ZipFile(io.BytesIO(zip_bytes(folder))) as archive:
        names = set(archive.namelist())
    assert {f"{folder.name}/{name}" for name in result.files} <= names


def test_export_of_a_workspace_version_asks_for_its_number(page_settings, offline_azure) -> None:
    at = open_page({"model": "iris-classifier", "version": "1"})
    at.text_input(key="azure_export_endpoint__iris-classifier").set_value("iris-ws")
    at.radio(key="azure_export_model_in_azure").set_value(MODEL_IN_WORKSPACE)
    at.button(key="azure_export_submit").click()
    rerun(at)
    assert any("Give the version of iris-classifier" in e.value for e in at.error), at.error
    at.text_input(key="azure_export_workspace_version").set_value("5")
    at.button(key="azure_export_submit").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    result = at.session_state[RESULT_KEY]
    assert result.deployment.model == "iris-classifier:5"
    assert "model: azureml:iris-classifier:5" in (result.folder / "deployment.yml").read_text()
    assert_readme_names_only_exported_files(result)
    assert any("azureml:iris-classifier:5" in c.value for c in at.caption)


def test_export_registers_the_model_and_references_the_version_azure_gives(
    page_settings, offline_azure, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAzureML(
        subscription_id=AZURE_ENV["AZURE_SUBSCRIPTION_ID"],
        resource_group=AZURE_ENV["AZURE_RESOURCE_GROUP"],
        workspace_name=AZURE_ENV["AZUREML_WORKSPACE_NAME"],
    )
    fake.serve_storage(monkeypatch)
    monkeypatch.setattr(
        services, "connection_for_tests", lambda ws: (StaticToken("token-never-shown"), fake)
    )
    # The workspace already holds an iris-classifier version 1 (an upload from elsewhere): the
    # page's registration becomes version 2, which is not our version 1.
    workspace = AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name)
    iris = local_model_path("models:/iris-classifier/1", page_settings, services.registry())
    elsewhere = register_model(
        ml_client(workspace, StaticToken(), fake), iris, "iris-classifier", "elsewhere"
    )
    assert elsewhere.version == "1"
    at = open_page({"model": "iris-classifier", "version": "1"})
    at.text_input(key="azure_export_endpoint__iris-classifier").set_value("iris-reg")
    at.radio(key="azure_export_model_in_azure").set_value(MODEL_REGISTER)
    at.button(key="azure_export_submit").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    put = [r for r in fake.of_route("asset_version", "PUT") if "/models/" in r.path][-1]
    assert put.path.endswith("/models/iris-classifier/versions/2")
    assert put.body["properties"]["tags"] == {"deploystudio.source": "models:/iris-classifier/1"}
    result = at.session_state[RESULT_KEY]
    assert "model: azureml:iris-classifier:2" in (result.folder / "deployment.yml").read_text()
    assert not (result.folder / "model").exists()
    assert_readme_names_only_exported_files(result)
    assert "token-never-shown" not in page_text(at)


def test_deploy_goes_through_the_runner_and_reports_the_sign_in_failure(
    page_settings, offline_azure
) -> None:
    at = open_page({"model": "iris-classifier", "version": "1"})
    at.button(key="azure_deploy_submit").click()
    rerun(at)
    slot = "azure_deploy_operation"
    operation_id = at.session_state[slot]
    operation = services.local_endpoints().operations.wait(operation_id, 60)
    assert operation.done and operation.error_type == "AzureConnectionError", operation
    assert operation.subject == "Azure online endpoint iris-classifier"
    assert "No credential could sign in" in operation.error and "az login" in operation.error
    rerun(at)
    assert any("No credential could sign in" in e.value for e in at.error)


def test_deploy_through_the_form_to_the_fake_workspace_shows_the_final_state(
    page_settings, offline_azure, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAzureML(
        subscription_id=AZURE_ENV["AZURE_SUBSCRIPTION_ID"],
        resource_group=AZURE_ENV["AZURE_RESOURCE_GROUP"],
        workspace_name=AZURE_ENV["AZUREML_WORKSPACE_NAME"],
    )
    fake.serve_storage(monkeypatch)
    monkeypatch.setattr(
        services, "connection_for_tests", lambda ws: (StaticToken("token-never-shown"), fake)
    )
    at = open_page({"model": "iris-classifier", "version": "1"})
    at.text_input(key="azure_deploy_endpoint__iris-classifier").set_value("iris-form-ep")
    at.selectbox(key="azure_deploy_auth_mode").set_value("aml_token")
    assert at.radio(key="azure_deploy_model_in_azure").value == MODEL_UPLOAD  # the default
    assert MODEL_LABELS[MODEL_REGISTER] not in at.radio(key="azure_deploy_model_in_azure").options
    at.checkbox(key="azure_all_traffic").check()
    at.button(key="azure_deploy_submit").click()
    rerun(at)
    operation_id = at.session_state["azure_deploy_operation"]
    operation = services.local_endpoints().operations.wait(operation_id, 60)
    assert operation.done and operation.error is None, operation
    rerun(at)

    (status,) = [s for s in at.status if "iris-form-ep/blue" in s.label]
    assert status.state == "complete" and "succeeded" in status.label
    shown = "\n".join(str(m.value) for m in status.markdown)
    assert "Done: create deployment 'blue'" in shown and "token-never-shown" not in shown
    # What the page sent: the endpoint with token auth, the uploaded model, then all traffic.
    endpoint = fake.endpoints["iris-form-ep"]["properties"]
    assert endpoint["authMode"] == "AMLToken" and endpoint["traffic"] == {"blue": 100}
    (model_put,) = [r for r in fake.of_route("asset_version", "PUT") if "/models/" in r.path]
    assert model_put.body["properties"]["modelType"] == "mlflow_model"
    assert fake.blobs, "the model's files were uploaded"
    assert ("iris-form-ep", "blue") in fake.deployments
