"""`deploystudio endpoint ...` and `deploystudio deploy` in-process, against real servers.

The module's own data folder (DEPLOYSTUDIO_HOME) keeps its endpoints apart from other tests';
the tests share one endpoint in file order and everything is stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.models import Model

from deploystudio.cli.main import EXIT_USER_ERROR, main
from deploystudio.deployment.local.processes import ServerKind, ServerProcess, our_processes
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.store import DeploymentStore
from deploystudio.prediction import local_model_path
from tests.conftest import settings_for

DEPLOY_LATE = ("deploy", "cli-ep", "--deployment", "late", "--model", "models:/iris-classifier/1")
IRIS_CLASSES = {"setosa", "versicolor", "virginica"}

ECHO_SCRIPT = """
import json


def init():
    pass


def run(raw_data):
    return {"echo": json.loads(raw_data)["input_data"]["columns"]}
"""


def wait_until(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def home(tmp_path_factory, settings, seeded):
    home = tmp_path_factory.mktemp("endpoint-cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPLOYSTUDIO_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
        try:
            yield home
        finally:
            assert main(["endpoint", "stop-all"]) == 0
            leftovers = list(our_processes(home))
            for process in leftovers:
                os.killpg(process.pid, signal.SIGKILL)
            assert not leftovers


@pytest.fixture(scope="module")
def request_file(home, settings) -> Path:
    local = settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri)
    model = local_model_path("models:/iris-classifier/1", local)
    example = Model.load(str(model)).load_input_example(str(model))
    path = home / "request.json"
    body = {"input_data": {"columns": list(example.columns), "data": example.values.tolist()}}
    path.write_text(json.dumps(body))
    return path


def test_endpoint_create_prints_the_scoring_uri_and_no_key(capsys, home):
    code, out, err = run_cli(capsys, "endpoint", "create", "cli-ep", "--json")
    assert code == 0, err
    endpoint = json.loads(out)
    assert endpoint["name"] == "cli-ep" and endpoint["state"] == "ready"
    assert endpoint["scoring_uri"].startswith("http://127.0.0.1:")
    assert "key" not in out.replace('"auth_mode": "key"', "")


def test_deploy_resolves_the_alias_and_takes_all_traffic(capsys, home):
    code, out, err = run_cli(
        capsys,
        "deploy",
        "cli-ep",
        "--deployment",
        "blue",
        "--model",
        "models:/iris-classifier@champion",
        "--all-traffic",
        "--max-batch-size",
        "8",
        "--max-wait-ms",
        "2",
        "--json",
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["deployment"]["state"] == "ready"
    assert answer["deployment"]["settings"]["max_batch_size"] == 8
    assert answer["deployment"]["settings"]["max_wait_ms"] == 2
    assert answer["deployment"]["model_uri"] == "models:/iris-classifier/1"
    assert answer["traffic"] == {"blue": 100}
    assert "Starting cli-ep/blue" in err  # progress goes to stderr with --json


def test_deploy_refuses_batching_for_a_model_without_a_signature(capsys, home):
    code, _, err = run_cli(
        capsys,
        "deploy",
        "cli-nosig",
        "--deployment",
        "nosig",
        "--model",
        "models:/wine-no-signature/1",
        "--max-batch-size",
        "4",
    )
    assert code != 0
    assert "max_batch_size" in err and "signature" in err
    assert run_cli(capsys, "endpoint", "delete", "cli-nosig")[0] == 0


def test_deploy_with_a_script_folder_saves_and_serves_it_as_a_bundle(capsys, home, request_file):
    folder = home / "echo-script"
    folder.mkdir()
    (folder / "score.py").write_text(ECHO_SCRIPT)
    code, out, err = run_cli(
        capsys,
        "deploy",
        "cli-ep",
        "--deployment",
        "echo",
        "--model",
        "models:/iris-classifier/1",
        "--script",
        str(folder),
    )
    assert code == 0, err
    assert "scoring bundle echo:1" in out and "is ready" in out
    assert (home / "bundles" / "echo" / "1" / "conda.yaml").is_file()
    code, out, err = run_cli(
        capsys, "endpoint", "invoke", "cli-ep", "--input", str(request_file), "--deployment", "echo"
    )
    assert code == 0, err
    assert json.loads(out)["echo"][0] == "sepal_length"


def test_list_and_show(capsys, home):
    code, out, _ = run_cli(capsys, "endpoint", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [e["name"] for e in listed] == ["cli-ep"]
    assert {d["name"] for d in listed[0]["deployments"]} == {"blue", "echo"}
    code, out, _ = run_cli(capsys, "endpoint", "list")
    assert "cli-ep" in out and "blue=100, echo=0" in out
    code, out, _ = run_cli(capsys, "endpoint", "show", "cli-ep")
    assert code == 0 and "deployment blue: ready" in out and "deployment echo: ready" in out


def test_invoke_goes_where_traffic_says(capsys, home, request_file):
    code, out, err = run_cli(capsys, "endpoint", "invoke", "cli-ep", "--input", str(request_file))
    assert code == 0, err
    predictions = json.loads(out)
    assert len(predictions) == 5 and set(predictions) <= IRIS_CLASSES


def test_traffic_is_set_checked_and_shown(capsys, home):
    code, out, _ = run_cli(capsys, "endpoint", "traffic", "cli-ep", "blue=90", "echo=10", "--json")
    assert code == 0 and json.loads(out)["traffic"] == {"blue": 90, "echo": 10}
    code, _, err = run_cli(capsys, "endpoint", "traffic", "cli-ep", "blue=90")
    assert code == EXIT_USER_ERROR and "sum to 90" in err
    code, _, err = run_cli(
        capsys, "endpoint", "traffic", "cli-ep", "blue=100", "--mirror", "echo=60"
    )
    assert code == EXIT_USER_ERROR and "from 0 to 50" in err
    code, out, _ = run_cli(
        capsys, "endpoint", "traffic", "cli-ep", "blue=100", "--mirror", "echo=10", "--json"
    )
    shown = json.loads(out)
    assert shown["traffic"] == {"blue": 100, "echo": 0} and shown["mirror"] == ["echo", 10]
    code, out, _ = run_cli(capsys, "endpoint", "traffic", "cli-ep")
    assert "blue=100, echo=0; mirror echo=10" in out


def test_keys_are_printed_on_request_and_regenerated(capsys, home, request_file):
    code, out, _ = run_cli(capsys, "endpoint", "keys", "cli-ep", "--json")
    keys = json.loads(out)
    assert code == 0 and len(keys["primary"]) > 30 and keys["primary"] != keys["secondary"]
    code, out, _ = run_cli(
        capsys, "endpoint", "keys", "cli-ep", "--regenerate", "primary", "--json"
    )
    renewed = json.loads(out)
    assert renewed["primary"] != keys["primary"] and renewed["secondary"] == keys["secondary"]
    # The front takes the new key at once: invoke (with the primary key) still works.
    code, _, err = run_cli(capsys, "endpoint", "invoke", "cli-ep", "--input", str(request_file))
    assert code == 0, err
    for command in (["endpoint", "list"], ["endpoint", "show", "cli-ep", "--json"]):
        _, out, _ = run_cli(capsys, *command)
        assert renewed["primary"] not in out and renewed["secondary"] not in out


def shown(capsys: pytest.CaptureFixture) -> dict:
    code, out, err = run_cli(capsys, "endpoint", "show", "cli-ep", "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_killed_front_is_started_again_by_the_next_command(capsys, home, request_file):
    before = shown(capsys)
    os.kill(before["front_pid"], signal.SIGKILL)
    front = ServerProcess(ServerKind.FRONT, before["front_pid"], before["front_port"], Path("-"))
    assert wait_until(lambda: not front.is_ours())
    # `endpoint invoke` says to restart the endpoint: `endpoint restart` does it.
    code, out, err = run_cli(capsys, "endpoint", "restart", "cli-ep")
    assert code == 0, err
    assert "front started again" in out + err
    after = shown(capsys)
    assert after["state"] == "ready" and after["front_pid"] != before["front_pid"]
    # The front takes its old port again when it is free; when another process took it in the
    # meantime (an ephemeral port of some other connection, seen under a loaded CI), it moves,
    # and the command must then say where the endpoint now answers.
    if after["scoring_uri"] != before["scoring_uri"]:
        assert after["scoring_uri"] in out + err
    code, _, err = run_cli(capsys, "endpoint", "invoke", "cli-ep", "--input", str(request_file))
    assert code == 0, err
    # Any command that touches the endpoint repairs it, invoke included.
    os.kill(after["front_pid"], signal.SIGKILL)
    front = ServerProcess(ServerKind.FRONT, after["front_pid"], after["front_port"], Path("-"))
    assert wait_until(lambda: not front.is_ours())
    code, _, err = run_cli(capsys, "endpoint", "invoke", "cli-ep", "--input", str(request_file))
    assert code == 0, err
    assert "front started again" in err


def test_a_deploy_killed_while_starting_is_settled_by_the_next_command(
    capsys, home, request_file, settings
):
    store = DeploymentStore.from_settings(settings_for(home, MLFLOW_TRACKING_URI="-"))
    deployer = subprocess.Popen(
        [sys.executable, "-m", "deploystudio.cli.main", *DEPLOY_LATE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def late():
        return next((d for d in store.list_deployments("cli-ep") if d.name == "late"), None)

    try:
        assert wait_until(lambda: late() is not None and late().state == "starting", 60)
    finally:
        deployer.kill()  # kill -9, while its server loads the model
        deployer.wait()
    server = ServerProcess(ServerKind.AZUREML, late().pid, late().port, Path("-"))
    if not server.answers(0.2):
        # Not ready yet: no traffic for it (it would answer 503).
        code, _, err = run_cli(capsys, "endpoint", "traffic", "cli-ep", "blue=50", "late=50")
        assert code == EXIT_USER_ERROR and "only to ready deployments" in err, err
    assert wait_until(lambda: server.answers(0.5), 60)
    # The next command adopts the server its killed starter left: ready, not starting for good.
    deployments = {d["name"]: d for d in shown(capsys)["deployments"]}
    assert deployments["late"]["state"] == "ready"
    assert deployments["late"]["pid"] == server.pid
    code, _, err = run_cli(capsys, *DEPLOY_LATE)
    assert code == EXIT_USER_ERROR and "already has a deployment named 'late'" in err
    code, _, err = run_cli(capsys, "endpoint", "traffic", "cli-ep", "blue=50", "late=50")
    assert code == 0, err
    for _ in range(10):
        code, _, err = run_cli(capsys, "endpoint", "invoke", "cli-ep", "--input", str(request_file))
        assert code == 0, err
    code, _, err = run_cli(
        capsys, "endpoint", "traffic", "cli-ep", "blue=100", "late=0", "--mirror", "echo=10"
    )
    assert code == 0, err
    LocalTarget(settings_for(home, MLFLOW_TRACKING_URI="-")).delete_deployment("late", "cli-ep")


def test_user_errors_exit_2_with_the_message(capsys, home):
    code, _, err = run_cli(capsys, "endpoint", "create", "x")
    assert code == EXIT_USER_ERROR and "start with a letter" in err
    code, _, err = run_cli(capsys, "endpoint", "delete", "cli-ep-missing")
    assert code == 0  # idempotent, as MLflow's plugin contract asks
    code, _, err = run_cli(capsys, "endpoint", "show", "nope")
    assert code == EXIT_USER_ERROR and "no endpoint named 'nope'" in err
    code, _, err = run_cli(
        capsys, "deploy", "cli-ep", "--deployment", "blue", "--model", "models:/iris-classifier/1"
    )
    assert code == EXIT_USER_ERROR and "already has a deployment named 'blue'" in err


def test_stop_all_then_restart(capsys, home):
    code, out, _ = run_cli(capsys, "endpoint", "stop-all", "--json")
    stopped = json.loads(out)["stopped"]
    assert code == 0 and len(stopped) == 3  # two servers and the front
    assert not list(our_processes(home))
    code, out, _ = run_cli(capsys, "endpoint", "show", "cli-ep", "--json")
    shown = json.loads(out)
    assert shown["state"] == "stopped"
    assert {d["state"] for d in shown["deployments"]} == {"stopped"}
    code, _, err = run_cli(capsys, "endpoint", "restart", "cli-ep", "--deployment", "echo")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "endpoint", "show", "cli-ep", "--json")
    shown = json.loads(out)
    assert shown["state"] == "ready"  # a ready deployment brings its front back
    assert {d["name"]: d["state"] for d in shown["deployments"]} == {
        "blue": "stopped",
        "echo": "ready",
    }


def test_traffic_goes_only_to_ready_deployments(capsys, home):
    # blue is stopped and keeps its share until it is moved: it may lose it, never gain.
    code, _, err = run_cli(
        capsys, "endpoint", "traffic", "cli-ep", "blue=50", "echo=50", "--no-mirror"
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, "endpoint", "traffic", "cli-ep", "blue=60", "echo=40")
    assert code == EXIT_USER_ERROR
    assert "'blue' is stopped" in err and "only to ready deployments" in err
    code, _, err = run_cli(
        capsys, "endpoint", "traffic", "cli-ep", "blue=0", "echo=100", "--mirror", "blue=10"
    )
    assert code == EXIT_USER_ERROR and "only to ready deployments" in err, err
    code, _, err = run_cli(capsys, "endpoint", "traffic", "cli-ep", "echo=100")
    assert code == 0, err


def test_delete_stops_and_removes_the_endpoint(capsys, home):
    code, out, _ = run_cli(capsys, "endpoint", "delete", "cli-ep")
    assert code == 0 and "deleted" in out
    assert not list(our_processes(home))
    assert not (home / "endpoints" / "cli-ep").exists()
    _, out, _ = run_cli(capsys, "endpoint", "list", "--json")
    assert json.loads(out) == []
