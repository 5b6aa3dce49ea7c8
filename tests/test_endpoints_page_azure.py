"""The Endpoints page's panels over an Azure online endpoint, through AppTest (issue 15).

The panels reach their target only through `services.endpoint_target()`, typed to the
interface; here it answers with an AzureTarget over the real azure-ai-ml whose HTTP transport is
the fake ARM (tests/azure_fake.py). What Azure has (traffic, keys, logs, history) works as for a
local endpoint; what it lacks (metrics, restart) says so instead of failing. The `azure`
fixture points `endpoint_target` at the Azure target directly; the `picked` fixture goes through
the page's target picker instead (the workspace from the environment, as the Azure settings read
it, and the fake transport through `services.connection_for_tests`).
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from components import services
from components.endpoint_keys import reveal_key
from components.target_picker import WIDGET_KEY
from components.traffic_editor import editor_key
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.store import DeploymentStore
from tests.azure_fake import FakeAzureML, StaticToken, fake_target
from tests.conftest import REPO_ROOT
from tests.page_support import (  # noqa: F401 (fixtures)
    endpoint_page,
    fresh_caches,
    pages_using,
    prediction_worker_stopped_at_the_end,
    rerun,
    settle_change,
    texts,
)

ENDPOINT = "iris-ep"
MODEL = "azureml:iris-classifier:2"
TIMEOUT = 60


@pytest.fixture
def azure(tmp_path, settings, seeded, monkeypatch):
    """An Azure endpoint with blue (all traffic) and green (0%), shown by the page."""
    with pages_using(tmp_path / "home", settings) as page_settings:
        fake = FakeAzureML()
        store = DeploymentStore(tmp_path / "azure.db", actor="tester")
        target = fake_target(fake, page_settings, store)
        target.create_endpoint(ENDPOINT, {"auth_mode": "key"})
        for name in ("blue", "green"):
            record = target.create_deployment(name, MODEL, ENDPOINT, {"instance_type": "F2"})
            assert record.state is DeploymentState.READY
        target.set_traffic(ENDPOINT, {"blue": 100, "green": 0})
        fake.logs[(ENDPOINT, "green")] = "green started\nlistening on 31311\n"
        monkeypatch.setattr(services, "endpoint_target", lambda: target)
        try:
            yield target, fake
        finally:
            services.local_endpoints().operations.shutdown()
            services._local_endpoints.clear()


def open_page(tab: str) -> AppTest:
    return endpoint_page(ENDPOINT, tab, TIMEOUT)


def settle(at: AppTest):
    return settle_change(at, ENDPOINT, TIMEOUT)


def test_traffic_change_reaches_azure(azure) -> None:
    target, fake = azure
    at = open_page("Traffic")
    key = editor_key(target.get_endpoint(ENDPOINT))
    at.slider(key=f"{key}_split").set_value(30)
    rerun(at)
    at.button(key=f"{key}_apply").click()
    rerun(at)
    operation = settle(at)
    assert operation.error is None, operation.error
    assert target.get_endpoint(ENDPOINT).traffic == {"blue": 70, "green": 30}
    assert fake.of_route("endpoint", "PUT")[-1].body["properties"]["traffic"] == {
        "blue": 70,
        "green": 30,
    }


def test_keys_are_shown_and_regenerated_on_azure(azure) -> None:
    target, fake = azure
    before = target.get_keys(ENDPOINT)
    at = open_page("Keys")
    assert before.primary not in texts(at.code)  # hidden until shown
    at.toggle(key=reveal_key(ENDPOINT)).set_value(True)
    rerun(at)
    assert before.primary in texts(at.code)
    at.radio(key=f"keys_{ENDPOINT}_which").set_value("secondary")
    rerun(at)
    at.checkbox(key=f"keys_{ENDPOINT}_confirm").check()
    rerun(at)
    at.button(key=f"keys_{ENDPOINT}_regenerate").click()
    rerun(at)
    operation = settle(at)
    assert operation.error is None, operation.error
    after = target.get_keys(ENDPOINT)
    assert after.primary == before.primary and after.secondary != before.secondary
    assert fake.of_route("regenerate_keys", "POST")


def test_logs_shown_and_what_azure_lacks_is_said(azure) -> None:
    at = open_page("Deployments")
    assert "listening on 31311" in texts(at.code)
    # Azure ML has no restart: the button is not offered, delete is.
    labels = [b.label for b in at.button]
    assert "Restart" not in labels and "Delete deployment" in labels
    at = open_page("Metrics")
    assert "does not report metrics" in texts(at.info)
    at = open_page("History")
    # Azure's changes are in the endpoint's history too, as the target recorded them.
    history = [d.value for d in at.dataframe if "who" in d.value.columns]
    assert history and len(history[0]) == len(azure[0].history(ENDPOINT)) > 0


WORKSPACE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555",
    "AZURE_RESOURCE_GROUP": "rg-picked",
    "AZUREML_WORKSPACE_NAME": "ws-picked",
}


@pytest.fixture
def picked(tmp_path, settings, seeded, monkeypatch):
    """The same Azure endpoint, reached only through the page's picker (nothing patched but the
    transport and credential the page's AzureTarget is built with)."""
    for name, value in WORKSPACE_ENV.items():
        monkeypatch.setenv(name, value)
    with pages_using(tmp_path / "home", settings) as page_settings:
        fake = FakeAzureML(
            subscription_id=WORKSPACE_ENV["AZURE_SUBSCRIPTION_ID"],
            resource_group=WORKSPACE_ENV["AZURE_RESOURCE_GROUP"],
            workspace_name=WORKSPACE_ENV["AZUREML_WORKSPACE_NAME"],
            time_scale=0.0,  # long-running operations end at their first poll, without waits
        )
        seeding = fake_target(fake, page_settings, DeploymentStore(tmp_path / "seed.db"))
        seeding.create_endpoint(ENDPOINT, {"auth_mode": "key"})
        for name in ("blue", "green"):
            seeding.create_deployment(name, MODEL, ENDPOINT, {"instance_type": "F2"})
        seeding.set_traffic(ENDPOINT, {"blue": 100, "green": 0})
        fake.logs[(ENDPOINT, "blue")] = "blue started\nscoring on the picked workspace\n"
        monkeypatch.setattr(services, "connection_for_tests", lambda ws: (StaticToken(), fake))
        try:
            yield fake
        finally:
            services.local_endpoints().operations.shutdown()
            services._local_endpoints.clear()
            services._azure_target.clear()


def test_the_picker_offers_the_settings_workspace_and_manages_its_endpoints(picked) -> None:
    fake = picked
    # Local first: the workspace is offered, and local has no endpoint here.
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("views/endpoints.py")
    rerun(at)
    picker = at.radio(key=WIDGET_KEY)
    assert picker.value == "here"
    assert picker.options == ["Local", "Azure ML: ws-picked"]
    assert any("No local endpoints yet" in i.value for i in at.info)
    assert not fake.of_route("endpoints")  # Azure is not asked until it is picked
    picker.set_value("azure")
    rerun(at)
    assert at.selectbox(key="endpoint").options == [ENDPOINT]
    assert fake.of_route("endpoints", "GET")
    assert "scoring on the picked workspace" in texts(at.code)  # blue's log, from getLogs

    # Rollback from the Safe rollout tab: green had a share, blue gets all of it back.
    fake_endpoint = fake.endpoints[ENDPOINT]
    fake_endpoint["properties"]["traffic"] = {"blue": 80, "green": 20}
    at = endpoint_page(ENDPOINT, "Safe rollout", TIMEOUT, target="azure", old="blue", new="green")
    assert at.radio(key=WIDGET_KEY).value == "azure"
    at.button(key=f"rollout_{ENDPOINT}_rollback").click()
    rerun(at)
    operation = settle(at)
    assert operation.error is None, operation.error
    sent = fake.of_route("endpoint", "PUT")[-1].body["properties"]["traffic"]
    assert {name: share for name, share in sent.items() if share} == {"blue": 100}


def test_the_picker_says_how_to_offer_a_workspace_when_none_is_set(
    tmp_path, settings, seeded, monkeypatch
) -> None:
    for names in (
        ("AZURE_SUBSCRIPTION_ID", "AZUREML_ARM_SUBSCRIPTION"),
        ("AZUREML_WORKSPACE_NAME", "AZURE_WORKSPACE_NAME", "AZUREML_ARM_WORKSPACE_NAME"),
    ):
        for name in names:
            monkeypatch.delenv(name, raising=False)
    with pages_using(tmp_path / "home", settings):
        try:
            at = endpoint_page(ENDPOINT, None, TIMEOUT, target="azure")
            # ?target=azure without a workspace: local, and how to add one.
            assert at.radio(key=WIDGET_KEY).value == "here"
            assert at.radio(key=WIDGET_KEY).options == ["Local"]
            assert any("Set an Azure ML workspace" in c.value for c in at.caption)
        finally:
            services.local_endpoints().operations.shutdown()
            services._local_endpoints.clear()
