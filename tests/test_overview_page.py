"""The overview page (the app's home) through AppTest, with one real local endpoint serving the
iris classifier's champion (v1) with all its traffic, in the module's own data folder."""

from __future__ import annotations

import os
import signal

import pytest
from streamlit.testing.v1 import AppTest

from components import services
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.processes import our_processes
from deploystudio.deployment.local.target import LocalTarget
from tests.conftest import REPO_ROOT, settings_for
from tests.page_support import (  # noqa: F401 (fixtures)
    fresh_caches,
    pages_using,
    prediction_worker_stopped_at_the_end,
    rerun,
)

APP = str(REPO_ROOT / "app.py")
ENDPOINT = "overview-ep"
TIMEOUT = 120


@pytest.fixture(scope="module")
def home(tmp_path_factory, settings, seeded):
    home = tmp_path_factory.mktemp("overview-page")
    with pages_using(home, settings):
        yield home


@pytest.fixture(scope="module")
def target(home, settings, registry):
    local = settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri)
    target = LocalTarget(local, registry=registry, start_timeout_seconds=TIMEOUT)
    try:
        assert target.create_endpoint(ENDPOINT).state is DeploymentState.READY
        record = target.create_deployment("blue", "models:/iris-classifier/1", ENDPOINT)
        assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
        target.update_endpoint(ENDPOINT, {"traffic": {"blue": 100}})
        yield target
    finally:
        services.local_endpoints().operations.shutdown()
        services._local_endpoints.clear()
        target.stop_all()
        leftovers = list(our_processes(home))
        for process in leftovers:  # never leave a process behind, even when a test failed
            os.killpg(process.pid, signal.SIGKILL)
        assert not leftovers, f"processes left running: {leftovers}"


def open_home() -> AppTest:
    # No page switched to: the overview is what the app opens on.
    return rerun(AppTest.from_file(APP, default_timeout=TIMEOUT))


def test_home_is_the_overview_with_registry_counts(target):
    at = open_home()
    assert at.title[0].value == "Deploy Studio"
    metrics = {m.label: m.value for m in at.metric}
    facts = services.registry_overview(services.get_settings().registry_uri)
    assert metrics["Models"] == str(len(facts.models)) and len(facts.models) >= 5
    assert int(metrics["Versions"]) >= int(metrics["Models"])
    assert int(metrics["Aliases"]) >= 3
    assert metrics["Endpoints healthy"] == "1 of 1"
    assert metrics["Batch jobs running"] == "0"


def test_endpoint_health_traffic_and_what_it_serves(target):
    at = open_home()
    endpoints = next(d.value for d in at.dataframe if "health" in d.value.columns)
    row = endpoints.iloc[0]
    assert row["endpoint"] == ENDPOINT
    assert row["health"].endswith("healthy")
    assert row["traffic"] == "blue 100%"
    assert row["serves"] == "blue: iris-classifier v1"
    assert row["updated"].endswith(("(just now)", "min ago)"))
    # The front answered, so its counters give a rate (0 or more).
    assert row["requests"] >= 0 and row["requests/s"] >= 0


def test_next_steps_skip_the_served_champion_and_name_the_others(target):
    at = open_home()
    labels = [e.proto.label for e in at.main if e.type == "page_link"]
    assert any(
        label.startswith("Deploy diabetes-regressor version 1 (champion)") for label in labels
    )
    assert not any("Deploy iris-classifier" in label for label in labels)
    link = next(e for e in at.main if e.type == "page_link" and "diabetes" in e.proto.label)
    assert "model=diabetes-regressor" in link.proto.query_string


def test_recent_activity_in_plain_words_without_json(target):
    at = open_home()
    activity = next(d.value for d in at.dataframe if "what" in d.value.columns)
    traffic = activity[activity["what"] == f"Changed the traffic of endpoint {ENDPOINT}"]
    assert list(traffic["after"]) == ["blue 100%"]
    assert "Created deployment overview-ep/blue" in set(activity["what"])
    text = " ".join(activity[["what", "before", "after"]].astype(str).agg(" ".join, axis=1))
    assert "set_traffic" not in text and "{" not in text and '"' not in text
