"""The Deploy page through AppTest, with real servers on 127.0.0.1.

The module has its own data folder (its endpoints never meet other modules') over the session's
seeded registry. The tests share one endpoint, in file order: a server takes 5-10 s to start
here. The module fixture stops every server at the end and checks no process is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.models import Model
from streamlit.testing.v1 import AppTest

from components import services
from components.deploy_form import bundles_for
from deploystudio.customization.bundles import BundleStore, attach_bundle
from deploystudio.customization.script_environment import generate_environment
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.deploy_request import (
    DeployRequest,
    free_deployment_name,
    request_problems,
    suggest_endpoint_name,
)
from deploystudio.deployment.names import NAME_RULE
from deploystudio.prediction import local_model_path
from tests.conftest import REPO_ROOT
from tests.page_support import fresh_caches, pages_using, rerun  # noqa: F401 (fixture)
from tests.test_local_target import BROKEN_SCRIPT, processes_under

APP = str(REPO_ROOT / "app.py")
DEPLOY = "views/deploy.py"
IRIS_V1 = "models:/iris-classifier/1"
ENDPOINT = "page-iris"
SLOT = "deploy_operation"
# AppTest runs of a page that imports MLflow and azure-ai-ml: allow for a busy machine.
RUN_TIMEOUT = 120
# Starting a server takes 5-10 s here, more when the machine is busy.
DEPLOY_DEADLINE = 120


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy-page")


@pytest.fixture(scope="module")
def page_settings(home, settings, seeded):
    """Point the pages at this module's data folder and the session's seeded registry."""
    with pages_using(home, settings) as page_settings:
        yield page_settings


@pytest.fixture(scope="module")
def target(page_settings, home):
    """The page's own LocalTarget (the app's cached one for this data folder); everything it
    started is stopped at the end, and no process may be left under the folder."""
    local = services.local_endpoints()
    assert local.target.settings.home == home
    try:
        yield local.target
    finally:
        for operation in local.operations.running():
            local.operations.wait(operation.id, DEPLOY_DEADLINE)
        local.target.stop_all()
        services._local_endpoints.clear()
        leftovers = processes_under(home)
        for pid, _ in leftovers:  # never leave a process behind, even when a test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes left running: {leftovers}"


@pytest.fixture(scope="module")
def iris_path(page_settings, registry) -> Path:
    return local_model_path(IRIS_V1, page_settings, registry)


def open_deploy(query_params: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT)
    at.switch_page(DEPLOY)
    for name, value in query_params.items():
        at.query_params[name] = value
    return rerun(at)


def deploy_and_wait(at: AppTest) -> AppTest:
    """Click Deploy, then rerun the page (as its poll would) until the operation ends."""
    at.button(key="deploy_submit").click()
    rerun(at)
    deadline = time.monotonic() + DEPLOY_DEADLINE
    while True:
        operation = operation_of(at)
        assert operation is not None, [e.value for e in at.error]
        if operation.done:
            return rerun(at)  # the run after the end, as the poll's own rerun does
        assert time.monotonic() < deadline, f"still running: {operation.messages}"
        time.sleep(0.5)
        rerun(at)


def operation_of(at: AppTest):
    operation_id = at.session_state[SLOT] if SLOT in at.session_state else None  # noqa: SIM401
    return services.local_endpoints().operations.get(operation_id) if operation_id else None


def codes(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def test_deploys_to_a_new_endpoint_then_shows_how_to_call_it(target, iris_path):
    at = open_deploy({"model": "iris-classifier", "version": "1"})
    assert at.selectbox(key="deploy_model").value == "iris-classifier"
    assert at.selectbox(key="deploy_version__iris-classifier").value == "1"
    name_box = at.text_input(key="deploy_new_endpoint__iris-classifier")
    assert name_box.value == "iris-classifier"  # suggested from the model's name
    name_box.input(ENDPOINT)
    rerun(at)
    assert at.text_input(key="deploy_deployment_name__new").value == "blue"
    assert at.checkbox(key="deploy_all_traffic__new").value is True
    assert not at.error, [e.value for e in at.error]

    at = deploy_and_wait(at)
    operation = operation_of(at)
    assert operation.state.value == "succeeded", operation.error
    assert any("is ready on port" in m for m in operation.messages), operation.messages
    endpoint = target.get_endpoint(ENDPOINT)
    assert endpoint.traffic == {"blue": 100}
    assert (at.query_params["endpoint"], at.query_params["deployment"]) == (ENDPOINT, "blue")
    assert endpoint.scoring_uri in codes(at)
    # The form moves to the new endpoint and offers its next deployment, without traffic.
    assert at.radio(key="deploy_where").value == "existing"
    assert at.text_input(key=f"deploy_deployment_name__{ENDPOINT}").value == "green"
    assert not at.error, [e.value for e in at.error]

    # The key stays hidden until the toggle shows it.
    key = target.get_keys(ENDPOINT).primary
    assert not any(key in c for c in codes(at))
    at.toggle(key=f"deploy_show_key__{ENDPOINT}").set_value(True)
    rerun(at)
    assert key in codes(at)

    # The test call answers what the model predicts in this process.
    at.button(key=f"deploy_test__{ENDPOINT}/blue").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    example = Model.load(str(iris_path)).load_input_example(str(iris_path))
    expected = np.asarray(mlflow.pyfunc.load_model(str(iris_path)).predict(example)).tolist()
    assert json.loads(at.json[0].value) == expected
    assert any("Answered by deployment **blue**" in c.value for c in at.caption)
    # Ready-made calls for this endpoint, with the key left as a placeholder.
    curl = next(c for c in codes(at) if c.startswith("curl"))
    assert endpoint.scoring_uri in curl and "Bearer <KEY>" in curl and key not in curl
    assert any(link.value.startswith("Manage page-iris") for link in at.page_link)


def test_a_bad_endpoint_name_shows_the_rule_and_deploy_does_nothing(target):
    at = open_deploy({"model": "iris-classifier", "version": "1"})
    at.text_input(key="deploy_new_endpoint__iris-classifier").input("9-lives_ep")
    rerun(at)
    assert any(NAME_RULE in e.value for e in at.error), [e.value for e in at.error]
    # Disabled: a browser cannot click it (AppTest refuses to, as a browser would).
    assert at.button(key="deploy_submit").disabled
    assert operation_of(at) is None
    assert "9-lives_ep" not in [e.name for e in target.list_endpoints()]


def test_a_second_deployment_without_traffic_leaves_traffic_alone(target):
    before = target.get_endpoint(ENDPOINT).traffic
    at = open_deploy({"model": "iris-classifier", "version": "2", "endpoint": ENDPOINT})
    # The address names an existing endpoint: the form adds a deployment to it.
    assert at.radio(key="deploy_where").value == "existing"
    assert at.selectbox(key="deploy_existing_endpoint").value == ENDPOINT
    assert at.text_input(key=f"deploy_deployment_name__{ENDPOINT}").value == "green"
    assert at.checkbox(key=f"deploy_all_traffic__{ENDPOINT}").value is False
    assert any("safe rollout" in c.value for c in at.caption)
    # Adaptive batching is off by default; its wait only counts once it is on.
    assert at.number_input(key="deploy_max_batch_size").value == 1
    assert at.number_input(key="deploy_max_wait_ms").disabled
    assert any("Azure ML has none" in c.value for c in at.caption)
    at.number_input(key="deploy_max_batch_size").set_value(4)
    rerun(at)
    at.number_input(key="deploy_max_wait_ms").set_value(5)
    rerun(at)

    at = deploy_and_wait(at)
    assert operation_of(at).state.value == "succeeded", operation_of(at).error
    assert target.get_endpoint(ENDPOINT).traffic == {**before, "green": 0}
    green = target.get_deployment("green", ENDPOINT)
    assert (green.state, green.model_uri) == (DeploymentState.READY, "models:/iris-classifier/2")
    assert (green.settings["max_batch_size"], green.settings["max_wait_ms"]) == (4, 5)
    assert any("0% of live traffic" in s.value for s in at.success), [s.value for s in at.success]


def test_deploying_while_the_endpoint_is_busy_says_it_is_in_progress(target):
    release = threading.Event()
    runner = services.local_endpoints().operations
    blocker = runner.submit(
        f"endpoint {ENDPOINT}", "Shift traffic", lambda _: release.wait(60), actor="someone-else"
    )
    try:
        at = open_deploy({"model": "iris-classifier", "version": "1", "endpoint": ENDPOINT})
        at.text_input(key=f"deploy_deployment_name__{ENDPOINT}").input("yellow")
        rerun(at)
        at.button(key="deploy_submit").click()
        rerun(at)
        errors = [e.value for e in at.error]
        assert any("in progress" in e and "someone-else" in e for e in errors), errors
        assert operation_of(at) is None
    finally:
        release.set()
        runner.wait(blocker.id, 10)
    assert "yellow" not in target.get_endpoint(ENDPOINT).traffic


def test_a_bundle_whose_init_raises_shows_the_reason_and_log_tail(target, page_settings, iris_path):
    bundles = BundleStore(page_settings.home / "bundles")
    label = bundles.save(
        "broken-init", BROKEN_SCRIPT, generate_environment(iris_path), IRIS_V1, template="custom"
    ).label
    at = open_deploy({"model": "iris-classifier", "version": "1", "endpoint": ENDPOINT})
    at.selectbox(key="deploy_bundle__iris-classifier__1").set_value(label)
    rerun(at)
    assert not at.radio(key="deploy_where").disabled
    at.text_input(key=f"deploy_deployment_name__{ENDPOINT}").input("broken")
    rerun(at)
    at = deploy_and_wait(at)
    operation = operation_of(at)
    assert operation.state.value == "failed"
    assert "no weights in this folder" in operation.error
    errors = [e.value for e in at.error]
    assert any("failed" in e and "no weights in this folder" in e for e in errors), errors
    assert any("no weights in this folder" in c for c in codes(at))  # the log tail
    assert any("Endpoints page" in link.value for link in at.page_link)
    # The endpoint keeps serving as before.
    assert target.get_endpoint(ENDPOINT).traffic["blue"] == 100
    assert target.get_deployment("blue", ENDPOINT).state is DeploymentState.READY


def test_inspect_and_predict_link_to_deploy(page_settings):
    for page in ("views/inspect.py", "views/predict.py"):
        at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT)
        at.switch_page(page)
        at.query_params["model"], at.query_params["version"] = "iris-classifier", "2"
        rerun(at)
        links = [link for link in at.page_link if link.value == "Deploy to an endpoint"]
        assert links, page
        assert links[0].proto.query_string == "model=iris-classifier&version=2"


# -- the page's helpers, without a page ----------------------------------------------------------


def test_names_offered_are_valid_and_free():
    assert suggest_endpoint_name("iris_classifier.v2", []) == "iris-classifier-v2"
    assert suggest_endpoint_name("Iris", ["iris"]) == "iris-2"
    assert suggest_endpoint_name("42", []) == "ep-42"
    assert len(suggest_endpoint_name("x" * 40, ["x" * 32])) <= 32
    assert free_deployment_name(["Blue"]) == "green"


def test_request_problems_name_what_to_change(target):
    endpoints, deployments = target.list_endpoints(), target.list_deployments()
    request = DeployRequest(IRIS_V1, ENDPOINT, "blue", new_endpoint=True)
    problems = request_problems(request, endpoints, deployments)
    assert len(problems) == 1 and "already exists" in problems[0]
    request = DeployRequest(IRIS_V1, ENDPOINT, "BLUE", new_endpoint=False)
    assert "already has a deployment" in request_problems(request, endpoints, deployments)[0]


def test_bundles_offered_are_those_of_the_model(page_settings):
    store = BundleStore(page_settings.home / "bundles")
    assert {b.name for b in bundles_for(store, "iris-classifier")} == {"broken-init"}
    assert bundles_for(store, "wine-no-signature") == []


UNVALIDATED_MODEL = "deploy-page-unvalidated"


@pytest.fixture(scope="module")
def unvalidated_bundle(page_settings, registry, iris_path) -> str:
    """A model of its own (the registry is the session's) whose version 1 has a bundle attached
    that was saved without passing validation, as Customize allows."""
    source = registry.client.get_model_version("iris-classifier", "1").source
    registry.client.create_registered_model(UNVALIDATED_MODEL)
    registry.client.create_model_version(UNVALIDATED_MODEL, source)
    store = BundleStore(page_settings.home / "bundles")
    bundle = store.save(
        "unvalidated-score",
        BROKEN_SCRIPT,
        generate_environment(iris_path),
        f"models:/{UNVALIDATED_MODEL}/1",
        template="custom",
        validated=False,
    )
    attach_bundle(registry, bundle, f"models:/{UNVALIDATED_MODEL}/1")
    services.refresh_registry_listings()
    return bundle.label


def test_a_bundle_that_failed_validation_is_not_chosen_and_warns_when_chosen(unvalidated_bundle):
    at = open_deploy({"model": UNVALIDATED_MODEL, "version": "1"})
    select = at.selectbox(key=f"deploy_bundle__{UNVALIDATED_MODEL}__1")
    assert select.value is None
    warnings = " ".join(w.value for w in at.warning)
    assert f"{unvalidated_bundle} did not pass validation, so it is not chosen" in warnings
    version_label = at.selectbox(key=f"deploy_version__{UNVALIDATED_MODEL}").options[0]
    assert version_label == f"version 1 · bundle {unvalidated_bundle} (not validated)"
    assert select.options == [f"{unvalidated_bundle} (not validated)"]

    select.set_value(unvalidated_bundle)
    rerun(at)
    warnings = " ".join(w.value for w in at.warning)
    assert f"Bundle {unvalidated_bundle} was saved without passing validation" in warnings


@pytest.mark.parametrize("page", ["views/batch.py", "views/azure.py"])
def test_the_version_picker_of_batch_and_azure_says_the_bundle_is_not_validated(
    unvalidated_bundle, page
):
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT)
    at.switch_page(page)
    at.query_params["model"], at.query_params["version"] = UNVALIDATED_MODEL, "1"
    rerun(at)
    version_label = at.selectbox(key=f"deploy_version__{UNVALIDATED_MODEL}").options[0]
    assert version_label.endswith(f"bundle {unvalidated_bundle} (not validated)")
