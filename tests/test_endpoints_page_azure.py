"""The Endpoints page's panels over an Azure online endpoint, through AppTest (issue 15).

The panels reach their target only through `services.endpoint_target()`, typed to the
interface; here it answers with an AzureTarget over the real azure-ai-ml whose HTTP transport is
the fake ARM (tests/azure_fake.py). What Azure has (traffic, keys, logs, history) works as for a
local endpoint; what it lacks (metrics, restart) says so instead of failing. No target picker
yet: the page shows local endpoints unless `endpoint_target` is pointed elsewhere.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from components import services
from components.endpoint_keys import reveal_key
from components.traffic_editor import editor_key
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.store import DeploymentStore
from tests.azure_fake import FakeAzureML, fake_target
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
