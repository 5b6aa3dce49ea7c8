"""The Endpoints page through AppTest, against real servers on 127.0.0.1.

One endpoint with two deployments of the demo iris classifier (v1 "blue" with all traffic, v2
"green" at 0%), made through the domain in a module fixture, in the module's own data folder.
The tests share it in file order; the last one deletes the endpoint from the page, and the
fixture stops everything whatever happened.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from components import endpoint_changes, services
from components.endpoint_keys import reveal_key
from components.traffic_editor import editor_key
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.processes import our_processes
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.rollout import TEST_CALL_ACTION, Step, reached_steps
from tests.conftest import REPO_ROOT, settings_for
from tests.page_support import (  # noqa: F401 (fixtures)
    endpoint_page,
    fresh_caches,
    pages_using,
    prediction_worker_stopped_at_the_end,
    rerun,
    settle_change,
    texts,
)

ENDPOINT = "page-ep"
IRIS_CLASSES = {"setosa", "versicolor", "virginica"}
TIMEOUT = 120
OPERATION_SECONDS = 120


@pytest.fixture(scope="module")
def home(tmp_path_factory, settings, seeded):
    home = tmp_path_factory.mktemp("endpoints-page")
    with pages_using(home, settings):
        yield home


@pytest.fixture(scope="module")
def target(home, settings, registry):
    local = settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri)
    target = LocalTarget(local, registry=registry, start_timeout_seconds=TIMEOUT)
    try:
        assert target.create_endpoint(ENDPOINT).state is DeploymentState.READY
        for name, uri in (
            ("blue", "models:/iris-classifier/1"),
            ("green", "models:/iris-classifier/2"),
        ):
            record = target.create_deployment(name, uri, ENDPOINT)
            assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
        target.update_endpoint(ENDPOINT, {"traffic": {"blue": 100}})
        yield target
    finally:
        page_endpoints = services.local_endpoints()
        page_endpoints.operations.shutdown()
        services._local_endpoints.clear()
        target.stop_all()
        leftovers = list(our_processes(home))
        for process in leftovers:  # never leave a process behind, even when a test failed
            os.killpg(process.pid, signal.SIGKILL)
        assert not leftovers, f"processes left running: {leftovers}"


def open_page(tab: str | None = None, **params: str) -> AppTest:
    return endpoint_page(ENDPOINT, tab, TIMEOUT, **params)


def settle(at: AppTest):
    """Wait for the change the page started, then show its outcome; returns the operation."""
    return settle_change(at, ENDPOINT, OPERATION_SECONDS)


def direct_tests(target: LocalTarget, deployment: str) -> int:
    """Direct test calls of `deployment` in the endpoint's history."""
    history = target.history(ENDPOINT, limit=1000)
    subject = f"{ENDPOINT}/{deployment}"
    return sum(e.action == TEST_CALL_ACTION and e.target == subject for e in history)


def button(at: AppTest, label_start: str):
    found = [b for b in at.button if b.label.startswith(label_start)]
    assert found, [b.label for b in at.button]
    return found[0]


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first table that has `column` (AppTest's dataframes carry no key)."""
    tables = [d.value for d in at.dataframe if column in d.value.columns]
    assert tables, [list(d.value.columns) for d in at.dataframe]
    return tables[0]


def test_list_shows_the_endpoint_with_its_deployments(target):
    at = open_page()
    table = table_with(at, "scoring URI")
    row = table.set_index("endpoint").loc[ENDPOINT]
    assert row["state"] == "ready" and row["traffic"] == "blue 100%"
    assert row["scoring URI"] == target.get_endpoint(ENDPOINT).scoring_uri
    deployments = table_with(at, "model URI").set_index("deployment")
    assert deployments.loc["blue", "traffic %"] == 100
    assert deployments.loc["green", "model URI"] == "models:/iris-classifier/2"
    assert set(deployments["state"]) == {"ready"}
    # Which environment each server runs in (these two: the app's, as no --env was asked).
    assert deployments.loc["blue", "environment"].startswith("the app's environment (Python ")
    # Each deployment's log tail is there to read.
    assert "blue" in at.expander[0].label and at.expander[0].code


def test_traffic_slider_is_applied_in_one_change(target):
    at = open_page("Traffic")
    key = editor_key(target.get_endpoint(ENDPOINT))
    at.slider(key=f"{key}_split").set_value(30)
    rerun(at)
    assert "**blue** 70% · **green** 30%" in texts(at.caption)
    at.button(key=f"{key}_apply").click()
    rerun(at)
    operation = settle(at)
    assert operation.error is None, operation.error
    assert target.get_endpoint(ENDPOINT).traffic == {"blue": 70, "green": 30}
    # The sliders start again from the store.
    assert at.slider(key=f"{editor_key(target.get_endpoint(ENDPOINT))}_split").value == 30


def test_the_overview_shows_a_change_that_ended_while_the_page_was_drawn(target, monkeypatch):
    """The overview read before the change ended, and the change ended before the page asked
    about it: the page then had nothing to wait for and kept the old traffic on screen."""
    page_target = services.local_endpoints().target
    read = page_target.list_endpoints

    def read_then_let_changes_end():
        endpoints = read()
        for operation in endpoint_changes.running(ENDPOINT):
            services.local_endpoints().operations.wait(operation.id, OPERATION_SECONDS)
        return endpoints

    at = open_page("Traffic")
    key = editor_key(target.get_endpoint(ENDPOINT))
    at.slider(key=f"{key}_split").set_value(20)
    rerun(at)
    monkeypatch.setattr(page_target, "list_endpoints", read_then_let_changes_end)
    at.button(key=f"{key}_apply").click()
    rerun(at)  # no settle(): the change ended while this run drew the page
    assert target.get_endpoint(ENDPOINT).traffic == {"blue": 80, "green": 20}
    overview = table_with(at, "scoring URI").set_index("endpoint")
    assert overview.loc[ENDPOINT, "traffic"] == "blue 80% · green 20%"
    monkeypatch.undo()
    # Back to the 70/30 of the test before, which the tests after expect.
    target.update_endpoint(ENDPOINT, {"traffic": {"blue": 70, "green": 30}})


def test_a_mirror_over_50_is_refused_with_the_domains_message(target):
    before = target.get_endpoint(ENDPOINT)
    at = open_page("Traffic")
    key = editor_key(before)
    at.selectbox(key=f"{key}_mirror_to").set_value("green")
    at.number_input(key=f"{key}_mirror_percent").set_value(60)
    rerun(at)
    at.button(key=f"{key}_apply").click()
    rerun(at)
    operation = settle(at)
    assert operation.error and "from 0 to 50, not 60" in operation.error, operation.error
    assert "from 0 to 50, not 60" in texts(at.error)
    after = target.get_endpoint(ENDPOINT)
    assert (after.traffic, after.mirror) == (before.traffic, before.mirror)


def test_rollout_moves_traffic_step_by_step_and_rollback_puts_it_back(target):
    at = open_page("Safe rollout", old="blue", new="green")
    # 70/30 set by hand in the traffic test: the rollout stands at the canary step, with the
    # share green really has, and neither the mirror nor a test call is ticked: none was made.
    checklist = texts(at.markdown)
    assert ":material/arrow_right: **Send green 30% of live traffic** (now)" in checklist
    assert "Mirror live traffic to green] (skipped: no mirror was set)" in checklist
    assert "Test green directly] (skipped: no direct test call was recorded)" in checklist
    assert ":material/check_circle:" not in checklist
    button(at, "Rollback to blue").click()
    rerun(at)
    settle(at)
    endpoint = target.get_endpoint(ENDPOINT)
    assert (endpoint.traffic, endpoint.mirror) == ({"blue": 100, "green": 0}, None)
    assert "**Test green directly** (now)" in texts(at.markdown)

    button(at, "Test green directly").click()
    rerun(at)
    assert any("green answered" in s.value for s in at.success), texts(at.success)
    assert set(json.loads(at.json[-1].value)) <= IRIS_CLASSES

    expected = [
        ({"blue": 100, "green": 0}, ("green", 10)),
        ({"blue": 90, "green": 10}, None),
        ({"blue": 50, "green": 50}, None),
    ]
    for traffic, mirror in expected:
        button(at, "Next:").click()
        rerun(at)
        operation = settle(at)
        assert operation.error is None, operation.error
        endpoint = target.get_endpoint(ENDPOINT)
        assert (endpoint.traffic, endpoint.mirror) == (traffic, mirror)
    # Now every step before half was made on this page: each is ticked, none skipped.
    checklist = texts(at.markdown)
    for step in (
        "Test green directly",
        "Mirror 10% of live traffic to green",
        "Send green 10% of live traffic",
    ):
        assert f":green[:material/check_circle:] {step}" in checklist, checklist
    assert "skipped" not in checklist
    assert "**Send green 50%** (now)" in checklist

    button(at, "Rollback to blue").click()
    rerun(at)
    settle(at)
    endpoint = target.get_endpoint(ENDPOINT)
    assert (endpoint.traffic, endpoint.mirror) == ({"blue": 100, "green": 0}, None)
    assert button(at, "Rollback to blue").disabled


def test_invoke_returns_predictions_and_who_answered(target):
    at = open_page("Invoke")
    at.button(key=f"invoke_{ENDPOINT}_send").click()
    rerun(at)
    assert not at.error, texts(at.error)
    predictions = json.loads(at.json[-1].value)
    assert predictions and set(predictions) <= IRIS_CLASSES
    assert at.metric[0].value == "blue"  # all live traffic goes to blue
    tests_before = direct_tests(target, "green")
    assert direct_tests(target, "blue") == 0  # traffic decided: no direct test of anyone
    at.selectbox(key=f"invoke_{ENDPOINT}_to").set_value("green")
    rerun(at)
    at.button(key=f"invoke_{ENDPOINT}_send").click()
    rerun(at)
    assert at.metric[0].value == "green"  # the header reached the deployment at 0%
    # A call to one named deployment is its direct test: the rollout checklist reads it.
    assert direct_tests(target, "green") == tests_before + 1
    history = target.history(ENDPOINT, limit=1000)
    assert Step.TEST in reached_steps(history, ENDPOINT, "green")
    curl = next(c.value for c in at.code if c.value.startswith("curl"))
    assert "azureml-model-deployment: green" in curl and "Bearer <KEY>" in curl
    assert target.get_keys(ENDPOINT).primary not in curl


def test_keys_are_hidden_until_revealed_and_regenerate_changes_the_key(target):
    old = target.get_keys(ENDPOINT)
    at = open_page("Keys")
    assert old.primary not in texts(at.code) and old.secondary not in texts(at.code)
    at.toggle(key=reveal_key(ENDPOINT)).set_value(True)
    rerun(at)
    assert old.primary in texts(at.code) and old.secondary in texts(at.code)
    at.radio(key=f"keys_{ENDPOINT}_which").set_value("primary")
    rerun(at)
    assert at.button(key=f"keys_{ENDPOINT}_regenerate").disabled  # not confirmed yet
    at.checkbox(key=f"keys_{ENDPOINT}_confirm").check()
    rerun(at)
    at.button(key=f"keys_{ENDPOINT}_regenerate").click()
    rerun(at)
    operation = settle(at)
    assert operation.error is None, operation.error
    new = target.get_keys(ENDPOINT)
    assert new.primary != old.primary and new.secondary == old.secondary
    assert new.primary in texts(at.code) and old.primary not in texts(at.code)


def chart_traces(at: AppTest, number: int) -> dict[str, list[float]]:
    """The y values of each trace of the page's chart `number`, as the browser receives them."""
    spec = json.loads(at.get("plotly_chart")[number].proto.spec)
    traces = {}
    for trace in spec["data"]:
        y = trace["y"]
        if isinstance(y, dict):  # plotly sends numpy arrays as base64 typed arrays
            y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
        traces[trace["name"]] = [v for v in y if v is not None]
    return traces


def test_metrics_table_counts_the_requests_made(target, home):
    row = pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2]],
        columns=["sepal_length", "sepal_width", "petal_length", "petal_width"],
    )
    # Made before the tab is opened: its charts come from the front's history, so they show.
    for _ in range(3):
        target.predict(endpoint=ENDPOINT, inputs=row)
    at = open_page("Metrics")
    assert len(at.get("plotly_chart")) == 3
    requests_per_second = chart_traces(at, 0)
    assert max(requests_per_second["blue"]) > 0, requests_per_second

    def blue_requests() -> int:
        table = table_with(at, "errors 5xx").set_index("deployment")
        return int(table.loc["blue", "requests"])

    before = blue_requests()
    for _ in range(3):
        target.predict(endpoint=ENDPOINT, inputs=row)
    rerun(at)
    assert blue_requests() == before + 3


def test_deleting_a_deployment_with_traffic_is_refused(target):
    at = open_page("Deployments")
    at.button(key=f"deployment_{ENDPOINT}_blue_delete").click()
    rerun(at)
    operation = settle(at)
    assert operation.error and "still gets 100% of live traffic" in operation.error
    assert "still gets 100% of live traffic" in texts(at.error)
    assert target.get_deployment("blue", ENDPOINT).state is DeploymentState.READY


def test_history_lists_the_changes_made_on_the_page(target):
    at = open_page("History")
    table = table_with(at, "before")
    # Plain words: no action names, no stored JSON.
    traffic = table[table["what"] == f"Changed the traffic of endpoint {ENDPOINT}"]
    assert "blue 70% · green 30%" in set(traffic["after"])
    assert f"Regenerated a key of endpoint {ENDPOINT}" in set(table["what"])
    assert not table["after"].str.contains("{", regex=False).any()
    assert all(when.endswith("ago)") or when.endswith("(just now)") for when in table["when"])


def test_inspect_lineage_links_the_deployments_serving_each_version(target):
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("views/inspect.py")
    at.query_params["model"], at.query_params["version"] = "iris-classifier", "2"
    rerun(at)
    links = {e.proto.label: e.proto.query_string for e in at.main if e.type == "page_link"}
    assert links[f"Endpoint {ENDPOINT} · deployment green"] == (
        f"endpoint={ENDPOINT}&tab=Deployments"
    )
    assert f"Endpoint {ENDPOINT} · deployment blue" not in links  # blue serves version 1


def test_a_deployment_is_added_from_the_deployments_tab(target):
    at = open_page("Deployments", add="true", model="iris-classifier", version="1")
    name = at.text_input(key=f"add_deployment_name__{ENDPOINT}__yellow")
    assert name.value == "yellow"  # blue and green are taken
    at.number_input(key="deploy_instances").set_value(2)
    rerun(at)
    assert "It starts with 0% of live traffic" in texts(at.caption)
    at.button(key=f"add_deployment__{ENDPOINT}").click()
    rerun(at)
    operation = settle(at)
    assert operation.error is None, operation.error
    assert operation.messages, "no progress was shown"
    record = target.get_deployment("yellow", ENDPOINT)
    assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
    assert record.model_uri == "models:/iris-classifier/1"
    assert record.settings["instance_count"] == 2
    assert target.get_endpoint(ENDPOINT).traffic["yellow"] == 0
    deployments = table_with(at, "model URI").set_index("deployment")
    assert deployments.loc["yellow", "state"] == "ready"
    # The form offers the next free name; the one just used is not offered again.
    assert at.text_input(key=f"add_deployment_name__{ENDPOINT}__red").value == "red"
    assert not at.error, texts(at.error)


def test_deleting_the_endpoint_needs_its_name_then_stops_everything(target, home):
    at = open_page("Deployments")
    delete = at.button(key=f"delete_{ENDPOINT}")
    assert delete.disabled
    at.text_input(key=f"delete_{ENDPOINT}_confirm").input(ENDPOINT)
    rerun(at)
    at.button(key=f"delete_{ENDPOINT}").click()
    rerun(at)
    operation = settle(at)
    assert operation.error is None, operation.error
    assert target.list_endpoints() == []
    deadline = time.monotonic() + 10
    while list(our_processes(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(our_processes(home))
    assert any("No local endpoints yet" in i.value for i in at.info)
