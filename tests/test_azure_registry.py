"""An Azure ML workspace's model registry under the registry interface (issue 15).

The real azure-ai-ml lists, reads and downloads model versions; its HTTP goes to the fake ARM
and blob service of tests/azure_fake.py, which serve the real Azure MLflow model of the shared
fixtures (sklearn-diabetes) as a registered version's files. Browse and Inspect pick the source
through AppTest; the downloaded version is inspected like a local folder and deployed to a local
endpoint and scored.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from components import services
from components.registry_source import WIDGET_KEY
from deploystudio.azure_registry import AzureModelRegistry
from deploystudio.deployment.azure.workspace import AzureWorkspace
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.errors import DeployStudioError, InvalidModelError, ModelNotFoundError
from deploystudio.inspection import inspect_model
from deploystudio.model_registry import ModelRegistry, inspect_version
from tests.azure_fake import FakeAzureML, StaticToken
from tests.conftest import REPO_ROOT, settings_for
from tests.page_support import (  # noqa: F401 (fixtures)
    fresh_caches,
    pages_using,
    prediction_worker_stopped_at_the_end,
    rerun,
)

WORKSPACE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "33333333-4444-5555-6666-777777777777",
    "AZURE_RESOURCE_GROUP": "rg-models",
    "AZUREML_WORKSPACE_NAME": "ws-models",
}
TIMEOUT = 120


@pytest.fixture
def fake(azure_diabetes_model, monkeypatch) -> FakeAzureML:
    """A workspace with diabetes v1 and v2 (MLflow models, the fixture's files) and a custom
    (not MLflow) model; its blob service answers azure-ai-ml's storage client."""
    fake = FakeAzureML(
        subscription_id=WORKSPACE_ENV["AZURE_SUBSCRIPTION_ID"],
        resource_group=WORKSPACE_ENV["AZURE_RESOURCE_GROUP"],
        workspace_name=WORKSPACE_ENV["AZUREML_WORKSPACE_NAME"],
        time_scale=0.0,
    )
    for version in ("1", "2"):
        fake.add_model(
            "diabetes",
            version,
            azure_diabetes_model,
            description=f"Diabetes regression v{version}",
            tags={"team": "health", "stage": "prod" if version == "2" else "dev"},
        )
    fake.add_model("forecast", "1", azure_diabetes_model, model_type="custom_model")
    fake.serve_storage(monkeypatch)
    return fake


@pytest.fixture
def workspace_registry(fake, tmp_path) -> AzureModelRegistry:
    workspace = AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name)
    return AzureModelRegistry(settings_for(tmp_path / "home"), workspace, StaticToken(), fake)


def test_models_and_versions_are_listed_from_the_workspace(workspace_registry, fake) -> None:
    registry: ModelRegistry = workspace_registry
    assert isinstance(registry, ModelRegistry)
    page = registry.list_models()
    assert [m.name for m in page.models] == ["diabetes", "forecast"]
    assert page.next_page_token is None
    assert [m.name for m in registry.list_models("DIAB").models] == ["diabetes"]
    first = registry.list_models(page_size=1)
    assert [m.name for m in first.models] == ["diabetes"]
    second = registry.list_models(page_size=1, page_token=first.next_page_token)
    assert [m.name for m in second.models] == ["forecast"] and second.next_page_token is None
    with pytest.raises(DeployStudioError, match="no aliases"):
        registry.list_models(alias="champion")
    versions = registry.list_versions("diabetes")
    assert [v.version for v in versions] == ["2", "1"]
    assert versions[0].tags == {"team": "health", "stage": "prod"}
    assert versions[0].user_id == "data.scientist@example.com"
    model = registry.get_model("diabetes")
    assert (model.latest_version, model.description) == ("2", "Diabetes regression v2")
    assert registry.get_version("forecast", "1").status.startswith("custom_model")
    with pytest.raises(ModelNotFoundError, match="no version 9"):
        registry.get_version("diabetes", "9")
    with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
        registry.list_versions("nope")
    assert fake.of_route("assets", "GET") and fake.of_route("asset_versions", "GET")


def test_an_mlflow_version_is_downloaded_once_into_the_cache(
    workspace_registry, fake, azure_diabetes_model
) -> None:
    folder = workspace_registry.local_model_path("diabetes", "2")
    cache = workspace_registry.settings.home / "cache" / "models"
    assert folder.is_relative_to(cache)
    for original in azure_diabetes_model.iterdir():
        assert (folder / original.name).read_bytes() == original.read_bytes()
    # Through the datastore (its SAS secret) and the blob service, as azure-ai-ml downloads.
    assert fake.of_route("datastore_secrets", "POST")
    blob_reads = len(fake.of_route("blob", "GET"))
    assert blob_reads >= len(list(azure_diabetes_model.iterdir()))
    assert workspace_registry.local_model_path("diabetes", "2") == folder
    assert len(fake.of_route("blob", "GET")) == blob_reads  # the second time from the cache
    assert fake.sas_token not in repr(fake.requests)


def test_a_version_that_is_not_an_mlflow_model_is_refused(workspace_registry, fake) -> None:
    with pytest.raises(InvalidModelError, match="custom_model model, not an MLflow model"):
        workspace_registry.local_model_path("forecast", "1")
    assert not fake.of_route("blob", "GET")


def test_an_azure_version_is_inspected_like_the_local_folder(
    workspace_registry, azure_diabetes_model
) -> None:
    settings = workspace_registry.settings
    inspection = inspect_version(workspace_registry, "diabetes", "2", settings)
    local = inspect_model(str(azure_diabetes_model), settings)
    assert inspection.version is not None and inspection.version.version == "2"
    assert inspection.report == local.report
    assert inspection.signature == local.signature


def test_an_azure_version_is_deployed_to_a_local_endpoint_and_scored(
    workspace_registry, azure_diabetes_model, settings, registry
) -> None:
    folder = workspace_registry.local_model_path("diabetes", "1")
    target = LocalTarget(workspace_registry.settings, registry=registry, start_timeout_seconds=120)
    try:
        target.create_endpoint("diabetes")
        deployment = target.create_deployment("azure-v1", str(folder), "diabetes")
        assert deployment.state is DeploymentState.READY, (deployment.reason, deployment.log_tail)
        target.update_endpoint("diabetes", {"traffic": {"azure-v1": 100}})
        request = json.loads((azure_diabetes_model.parent / "sample-request.json").read_text())
        table = request["input_data"]
        frame = pd.DataFrame(table["data"], columns=table["columns"], index=table["index"])
        expected = mlflow.pyfunc.load_model(str(azure_diabetes_model)).predict(frame)
        answer = target.predict(endpoint="diabetes", inputs=request)
        assert answer == pytest.approx(np.asarray(expected).tolist())
    finally:
        target.stop_all()


@pytest.fixture
def pages(fake, tmp_path, settings, seeded, monkeypatch):
    for name, value in WORKSPACE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(services, "connection_for_tests", lambda ws: (StaticToken(), fake))
    with pages_using(tmp_path / "home", settings) as page_settings:
        try:
            yield page_settings
        finally:
            services._azure_model_registry.clear()
            services._local_endpoints.clear()


def run_page(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    for key, value in query.items():
        at.query_params[key] = value
    return rerun(at)


def test_browse_lists_the_workspace_models_and_links_to_inspect(pages, fake) -> None:
    at = run_page("views/browse.py")
    picker = at.radio(key=WIDGET_KEY)
    assert picker.options == ["MLflow registry", "Azure ML: ws-models"]
    assert "diabetes" not in set(at.dataframe[0].value["name"])  # the MLflow registry first
    picker.set_value("azure")
    rerun(at)
    assert list(at.dataframe[0].value["name"]) == ["diabetes", "forecast"]
    at = run_page("views/browse.py", source="azure", model="diabetes")
    assert at.radio(key=WIDGET_KEY).value == "azure", [e.value for e in at.error]
    assert at.subheader[0].value == "diabetes", [e.value for e in at.error]
    versions = [d.value for d in at.dataframe][-1]
    assert [str(v) for v in versions["version"]] == ["2", "1"]
    links = [link for link in at.get("page_link") if "Inspect version" in link.proto.label]
    assert [link.proto.label for link in links] == ["Inspect version 2", "Inspect version 1"]
    assert "source=azure" in links[0].proto.query_string


def test_inspect_shows_the_report_of_an_azure_registered_mlflow_model(pages) -> None:
    at = run_page("views/inspect.py", source="azure", model="diabetes", version="2")
    assert at.subheader[0].value == "diabetes · version 2"
    text = "\n".join(m.value for m in at.markdown)
    assert "No-code deployment" in text and "Saved with scikit-learn" in text
    assert any("Registered in the Azure ML workspace" in c.value for c in at.caption)
    at = run_page("views/inspect.py", source="azure", model="forecast", version="1")
    assert any("not an MLflow model" in e.value for e in at.error)
