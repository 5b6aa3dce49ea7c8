"""Deploy Studio as an MLflow deployments plugin: `get_deploy_client("deploystudio")` in this
process, and the `mlflow deployments` command line in a subprocess, both against real servers."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.deployments import PredictionsResponse, get_deploy_client
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from deploystudio.deployment.local.processes import our_processes
from deploystudio.prediction import local_model_path
from tests.conftest import settings_for

IRIS_V1 = "models:/iris-classifier/1"
MLFLOW_CLI = [sys.executable, "-m", "mlflow", "deployments"]


@pytest.fixture(scope="module")
def home(tmp_path_factory, settings, seeded):
    home = tmp_path_factory.mktemp("mlflow-plugin")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPLOYSTUDIO_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
        client = get_deploy_client("deploystudio")
        try:
            yield home
        finally:
            client.target.stop_all()
            leftovers = list(our_processes(home))
            for process in leftovers:
                os.killpg(process.pid, signal.SIGKILL)
            assert not leftovers


@pytest.fixture(scope="module")
def client(home):
    return get_deploy_client("deploystudio")


@pytest.fixture(scope="module")
def iris(home, settings):
    """The iris input example and what pyfunc predicts for it in this process."""
    path = local_model_path(IRIS_V1, settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri))
    example = Model.load(str(path)).load_input_example(str(path))
    expected = np.asarray(mlflow.pyfunc.load_model(str(path)).predict(example)).tolist()
    return example, expected


def mlflow_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MLFLOW_CLI, *args], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )


def test_the_entry_point_names_this_module():
    points = importlib.metadata.entry_points(group="mlflow.deployments")
    assert [p.value for p in points if p.name == "deploystudio"] == [
        "deploystudio.deployment.plugin"
    ]


def test_target_help_is_what_mlflow_shows():
    # What `mlflow deployments help -t deploystudio` prints.
    plugin = mlflow.deployments.interface.plugin_store["deploystudio"]
    assert "runtime=azureml|mlflow" in plugin.target_help()


def test_client_creates_on_a_new_endpoint_with_all_traffic_and_predicts(client, iris):
    example, expected = iris
    created = client.create_deployment("green", IRIS_V1, endpoint="plug")
    assert created["name"] == "green" and created["state"] == "ready"
    endpoint = client.get_endpoint("plug")
    assert endpoint["traffic"] == {"green": 100}
    assert endpoint["scoring_uri"].startswith("http://127.0.0.1:")

    response = client.predict(endpoint="plug", inputs=example)
    assert isinstance(response, PredictionsResponse)
    assert response["predictions"] == expected
    assert response.get_predictions().iloc[:, 0].tolist() == expected
    # By deployment name only: the endpoint is found, the header routes.
    assert client.predict(deployment_name="green", inputs=example)["predictions"] == expected

    assert client.get_deployment("green")["endpoint_name"] == "plug"
    assert [d["name"] for d in client.list_deployments(endpoint="plug")] == ["green"]
    assert [e["name"] for e in client.list_endpoints()] == ["plug"]


def test_client_errors_are_mlflow_exceptions_with_our_message(client):
    with pytest.raises(MlflowException, match="already has a deployment named 'green'") as taken:
        client.create_deployment("green", IRIS_V1, endpoint="plug")
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException, match="python_function flavor only"):
        client.create_deployment("other", IRIS_V1, flavor="sklearn", endpoint="plug")
    with pytest.raises(MlflowException, match="Unknown config for deploystudio: colour"):
        client.create_deployment("other", IRIS_V1, config={"colour": "red"}, endpoint="plug")
    with pytest.raises(MlflowException, match="100% of live traffic") as in_use:
        client.delete_deployment("green", endpoint="plug")
    assert in_use.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="no endpoint named 'nowhere'") as missing:
        client.get_endpoint("nowhere")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_client_moves_traffic_then_deletes(client, home):
    updated = client.update_endpoint("plug", {"traffic": "green=0"})
    assert updated["traffic"] == {"green": 0}
    green = client.get_deployment("green", endpoint="plug")
    client.delete_deployment("green", endpoint="plug")
    client.delete_deployment("green", endpoint="plug")  # idempotent
    assert client.list_deployments(endpoint="plug") == []
    assert all(p.pid != green["pid"] for p in our_processes(home))
    client.delete_endpoint("plug")
    client.delete_endpoint("plug")
    assert client.list_endpoints() == []


def test_mlflow_cli_drives_the_local_target(home, iris, tmp_path):
    example, expected = iris
    created = mlflow_cli(
        "create", "-t", "deploystudio", "--name", "cli-green", "-m", IRIS_V1,
        "--endpoint", "cli-plug", "-C", "instance_count=1",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr[-3000:]
    assert "python_function deployment cli-green is created" in created.stdout

    rows = tmp_path / "rows.json"
    rows.write_text(example.to_json(orient="records"))
    predicted = mlflow_cli(
        "predict", "-t", "deploystudio", "--endpoint", "cli-plug", "--input-path", str(rows)
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert json.loads(predicted.stdout)["predictions"] == expected

    got = mlflow_cli("get", "-t", "deploystudio", "--name", "cli-green")
    assert got.returncode == 0 and "state: ready" in got.stdout

    deleted = mlflow_cli("delete-endpoint", "-t", "deploystudio", "--endpoint", "cli-plug")
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    assert not list(our_processes(home))
    assert not (Path(home) / "endpoints" / "cli-plug").exists()


def test_mlflow_cli_create_then_delete_leaves_nothing(home):
    # MLflow's callers know deployments only: `create --name X` makes an endpoint X for it, and
    # `delete --name X` must take that endpoint too, not refuse because X has its traffic.
    created = mlflow_cli("create", "-t", "deploystudio", "--name", "solo", "-m", IRIS_V1)
    assert created.returncode == 0, created.stderr[-3000:]
    listed = mlflow_cli("list-endpoints", "-t", "deploystudio")
    assert listed.returncode == 0, listed.stderr[-3000:]
    # Plain values, as MLflow prints them with repr(): no enum members.
    assert "'auth_mode': 'key'" in listed.stdout and "'state': 'ready'" in listed.stdout
    assert "<AuthMode" not in listed.stdout and "<DeploymentState" not in listed.stdout

    deleted = mlflow_cli("delete", "-t", "deploystudio", "--name", "solo")
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    assert not list(our_processes(home))
    assert not (Path(home) / "endpoints" / "solo").exists()
    assert "solo" not in mlflow_cli("list-endpoints", "-t", "deploystudio").stdout


def test_delete_keeps_an_endpoint_the_user_named(client, home):
    # The endpoint was named by the caller, not made for the deployment: deleting its only
    # deployment while it has all the traffic is still refused, and nothing is stopped.
    client.create_deployment("kept", IRIS_V1, endpoint="named")
    with pytest.raises(MlflowException, match="100% of live traffic"):
        client.delete_deployment("kept", endpoint="named")
    assert client.get_deployment("kept", endpoint="named")["state"] == "ready"
    client.delete_endpoint("named")
    assert not list(our_processes(home))
