"""The local deployment target with real processes on 127.0.0.1: servers, fronts, recovery.

One module-scoped target over its own data folder (so endpoints of other test modules never
collide), whose servers are shared by the tests in file order: starting one takes 5-10 s here.
The last test stops everything and checks that no process and no port is left; the fixture's
teardown stops everything again whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model

from deploystudio.customization.bundles import BundleStore
from deploystudio.customization.script_environment import generate_environment
from deploystudio.deployment import invoke
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.healing import MAX_RESTARTS, restart_count
from deploystudio.deployment.local.processes import (
    RELAUNCH_FILE,
    ServerKind,
    ServerProcess,
    our_processes,
)
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.errors import (
    DeploymentConfigError,
    NameTakenError,
    ResourceInUseError,
    ScoringServerError,
    StateTransitionError,
)
from deploystudio.prediction import local_model_path
from tests.conftest import settings_for

State = DeploymentState
IRIS_V1 = "models:/iris-classifier/1"
IRIS_V2 = "models:/iris-classifier/2"

BUNDLE_SCRIPT = """
import json
import os

import mlflow
import pandas as pd


def init():
    global model
    model = mlflow.pyfunc.load_model(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model"))


def run(raw_data):
    table = json.loads(raw_data)["input_data"]
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    return {"bundle": "tagged", "predictions": model.predict(frame).tolist()}
"""

BROKEN_SCRIPT = """
def init():
    raise ValueError("no weights in this folder")


def run(raw_data):
    return []
"""

# Loads no model: starts in about a second, for tests about processes rather than models.
ECHO_SCRIPT = """
import json


def init():
    pass


def run(raw_data):
    return {"echo": json.loads(raw_data)}
"""


def processes_under(home: Path) -> list[tuple[int, str]]:
    """Every live process whose working folder is under `home` or whose command names it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(str(home)) or str(home) in command):
            found.append((int(entry.name), command))
    return found


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on the port (connections closing in TIME_WAIT may
    remain, as after any server stops; servers bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("local-target")


@pytest.fixture(scope="module")
def local_settings(home, settings, seeded):
    return settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri)


@pytest.fixture(scope="module")
def target(local_settings, registry, home):
    target = LocalTarget(local_settings, registry=registry, start_timeout_seconds=120)
    try:
        yield target
    finally:
        target.stop_all()
        leftovers = processes_under(home)
        for pid, _ in leftovers:  # never leave a process behind, even when a test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes left running: {leftovers}"


@pytest.fixture(scope="module")
def bundles(local_settings) -> BundleStore:
    return BundleStore(local_settings.home / "bundles")


@pytest.fixture(scope="module")
def iris_path(local_settings, registry) -> Path:
    return local_model_path(IRIS_V1, local_settings, registry)


@pytest.fixture(scope="module")
def iris_example(iris_path) -> pd.DataFrame:
    return Model.load(str(iris_path)).load_input_example(str(iris_path))


def save_bundle(bundles: BundleStore, name: str, script: str, model_path: Path) -> str:
    environment = generate_environment(model_path)
    return bundles.save(name, script, environment, IRIS_V1, template="custom").label


@pytest.fixture(scope="module")
def blue(target):
    """Endpoint `iris` with deployment `blue` (iris v1 through the champion alias), all traffic."""
    endpoint = target.create_endpoint("iris")
    assert endpoint.state is State.READY, endpoint.reason
    deployment = target.create_deployment("blue", "models:/iris-classifier@champion", "iris")
    assert deployment.state is State.READY, (deployment.reason, deployment.log_tail)
    target.update_endpoint("iris", {"traffic": {"blue": 100}})
    return deployment


def test_endpoint_front_answers_on_loopback(target, blue):
    endpoint = target.get_endpoint("iris")
    assert endpoint.state is State.READY
    assert endpoint.scoring_uri == f"http://127.0.0.1:{endpoint.front_port}/score"
    front = ServerProcess(ServerKind.FRONT, endpoint.front_pid, endpoint.front_port, Path("-"))
    assert front.is_ours() and front.answers()


def test_deployment_is_ready_with_its_version_resolved_and_its_own_folder(
    target, blue, local_settings
):
    assert blue.model_uri == IRIS_V1  # the alias, resolved at create time
    server = ServerProcess(ServerKind.AZUREML, blue.pid, blue.port, Path(blue.log_path))
    assert server.is_ours() and server.answers()
    run = Path(blue.log_path).parent
    assert run.parent == local_settings.home / "endpoints" / "iris" / "blue"
    assert (run / "score.py").is_file() and (run / "server.log").is_file()
    staged = run / "azureml-models" / "model" / "1" / "model" / "MLmodel"
    assert staged.is_file() and staged.stat().st_nlink > 1  # hard-linked, not copied
    assert target.get_endpoint("iris").traffic == {"blue": 100}


def test_iris_scores_through_the_endpoint_like_pyfunc(target, blue, iris_path, iris_example):
    expected = mlflow.pyfunc.load_model(str(iris_path)).predict(iris_example)
    answer = target.predict(endpoint="iris", inputs=iris_example)
    assert answer == np.asarray(expected).tolist()
    assert target.predict("blue", inputs=iris_example, endpoint="iris") == answer


def test_azure_fixture_sample_request_matches_pyfunc(target, blue, azure_diabetes_model):
    deployment = target.create_deployment("diabetes", str(azure_diabetes_model), "iris")
    assert deployment.state is State.READY, (deployment.reason, deployment.log_tail)
    request = json.loads((azure_diabetes_model.parent / "sample-request.json").read_text())
    table = request["input_data"]
    frame = pd.DataFrame(table["data"], columns=table["columns"], index=table["index"])
    expected = mlflow.pyfunc.load_model(str(azure_diabetes_model)).predict(frame)
    # The header reaches the deployment that has no live traffic.
    answer = target.predict("diabetes", inputs=request, endpoint="iris")
    assert answer == pytest.approx(np.asarray(expected).tolist())


def test_scoring_script_deployment_serves_its_bundle(
    target, blue, bundles, iris_path, iris_example
):
    label = save_bundle(bundles, "tagged", BUNDLE_SCRIPT, iris_path)
    deployment = target.create_deployment("tagged", IRIS_V1, "iris", {"bundle": label})
    assert deployment.state is State.READY, (deployment.reason, deployment.log_tail)
    assert deployment.bundle == label
    answer = target.predict("tagged", inputs=iris_example, endpoint="iris")
    assert answer["bundle"] == "tagged"
    assert answer["predictions"] == target.predict("blue", inputs=iris_example, endpoint="iris")


def test_init_that_raises_fails_with_the_log_tail_and_leaves_the_endpoint_alone(
    target, blue, bundles, iris_path, iris_example, home
):
    before = target.get_endpoint("iris")
    label = save_bundle(bundles, "broken", BROKEN_SCRIPT, iris_path)
    deployment = target.create_deployment("broken", IRIS_V1, "iris", {"bundle": label})
    assert deployment.state is State.FAILED
    assert "ValueError: no weights in this folder" in deployment.reason
    assert "no weights in this folder" in deployment.log_tail
    server = ServerProcess(ServerKind.AZUREML, deployment.pid, deployment.port, Path("-"))
    assert not server.is_ours()  # stopped, not left behind
    with pytest.raises(StateTransitionError, match="not ready"):
        target.store.replace_process("iris", "broken", 1, 1, "-")  # only a ready one switches
    after = target.get_endpoint("iris")
    assert after.traffic == {**before.traffic, "broken": 0}
    assert after.state is State.READY and after.front_pid == before.front_pid
    assert target.get_deployment("blue", "iris").state is State.READY
    assert target.predict(endpoint="iris", inputs=iris_example)


def test_mlflow_runtime_serves_mlflows_format(target, blue, iris_path, iris_example):
    deployment = target.create_deployment("mlflow-blue", IRIS_V1, "iris", {"runtime": "mlflow"})
    assert deployment.state is State.READY, (deployment.reason, deployment.log_tail)
    answer = target.predict("mlflow-blue", inputs=iris_example, endpoint="iris")
    expected = mlflow.pyfunc.load_model(str(iris_path)).predict(iris_example)
    assert answer == {"predictions": np.asarray(expected).tolist()}
    with pytest.raises(DeploymentConfigError, match="runtime 'azureml'"):
        target.create_deployment("nope", IRIS_V1, "iris", {"runtime": "mlflow", "bundle": "x:1"})


def restarted(target: LocalTarget, name: str, old_pid: int, seconds: float = 30.0):
    """The record once the front has it ready on a new server (None if it never was)."""
    record = None

    def again() -> bool:
        nonlocal record
        record = target.get_deployment(name, "iris")
        return record.state is State.READY and record.pid != old_pid

    return record if wait_until(again, seconds) else None


def test_killed_servers_are_restarted_by_their_front_and_counted(target, blue, iris_example):
    # kill -9 of the main process only, in both runtimes: gunicorn's master (its worker must
    # go with it) and uvicorn's single process.
    killed = [target.get_deployment(name, "iris") for name in ("tagged", "mlflow-blue")]
    for record in killed:  # how to start it again, readable by this user only
        assert (Path(record.log_path).parent / RELAUNCH_FILE).stat().st_mode & 0o077 == 0
    for record in killed:
        os.kill(record.pid, signal.SIGKILL)
    for old in killed:
        new = restarted(target, old.name, old.pid)
        assert new is not None, target.get_deployment(old.name, "iris")
        assert new.reason is None and new.port != old.port
        assert new.log_path == old.log_path  # the same run: its log goes on
        assert wait_until(lambda old=old: port_is_free(old.port), 5), old.port
        assert [p.pid for p in our_processes(Path(old.log_path).parent)] == [new.pid]
        assert target.predict(old.name, inputs=iris_example, endpoint="iris")
    front = target.get_endpoint("iris")
    keys = target.get_keys("iris")
    view = invoke.front_view(f"http://127.0.0.1:{front.front_port}", keys.primary)
    assert view is not None
    assert view["deployments"]["tagged"]["restarts"] == 1
    assert view["deployments"]["mlflow-blue"]["restarts"] == 1
    assert view["deployments"]["blue"]["restarts"] == 0
    assert restart_count(target.get_deployment("tagged", "iris").log_path) == 1


def test_a_server_that_keeps_failing_is_left_failed_after_its_restarts(target, blue):
    record = target.get_deployment("tagged", "iris")
    run = Path(record.log_path).parent
    script = run / "score.py"
    script.write_text('raise RuntimeError("broken on purpose")\n' + script.read_text())
    os.kill(record.pid, signal.SIGKILL)

    def crash_looped() -> bool:
        now = target.get_deployment("tagged", "iris")
        return now.state is State.FAILED and "crash loop" in (now.reason or "")

    # Backoffs of 1, 2 and 4 s and three starts that fail at import.
    assert wait_until(crash_looped, 60), target.get_deployment("tagged", "iris")
    failed = target.get_deployment("tagged", "iris")
    assert "broken on purpose" in failed.log_tail
    assert restart_count(failed.log_path) == MAX_RESTARTS
    assert not list(our_processes(run))  # no restart left running
    assert target.get_deployment("blue", "iris").state is State.READY


def test_two_concurrent_creates_of_one_name_one_wins(target, blue, bundles, iris_path):
    label = save_bundle(bundles, "echo", ECHO_SCRIPT, iris_path)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            outcomes.append(target.create_deployment("twin", IRIS_V1, "iris", {"bundle": label}))
        except NameTakenError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    errors = [o for o in outcomes if isinstance(o, NameTakenError)]
    created = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(errors) == 1 and len(created) == 1, outcomes
    assert "already has a deployment named 'twin'" in str(errors[0])
    assert created[0].state is State.READY
    twins = [d for d in target.list_deployments("iris") if d.name == "twin"]
    assert len(twins) == 1 and twins[0].pid == created[0].pid


def test_update_switches_servers_without_a_gap(target, blue, iris_example, local_settings):
    errors: list[Exception] = []
    answered = 0
    done = threading.Event()

    def keep_calling() -> None:
        nonlocal answered
        while not done.is_set():
            try:
                target.predict(endpoint="iris", inputs=iris_example)
                answered += 1
            except Exception as exc:  # any failure is what this test looks for
                errors.append(exc)
            time.sleep(0.02)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        updated = target.update_deployment("blue", "iris", model_uri=IRIS_V2)
    finally:
        done.set()
        caller.join()
    assert not errors, errors[:3]
    assert answered > 10
    assert updated.state is State.READY and updated.model_uri == IRIS_V2
    assert updated.pid != blue.pid
    old = ServerProcess(ServerKind.AZUREML, blue.pid, blue.port, Path("-"))
    assert not old.is_ours() and port_is_free(blue.port)
    run = Path(updated.log_path).parent
    assert not Path(blue.log_path).parent.exists()  # the old run's folder is gone
    v2 = local_model_path(IRIS_V2, local_settings)
    staged = run / "azureml-models" / "model" / "1" / "model" / "MLmodel"
    assert staged.read_text() == (v2 / "MLmodel").read_text()


def test_update_that_does_not_start_keeps_the_old_server(target, blue, bundles):
    current = target.get_deployment("blue", "iris")
    label = bundles.get("broken").label
    with pytest.raises(ScoringServerError, match="still serves models:/iris-classifier/2"):
        target.update_deployment("blue", "iris", config={"bundle": label})
    after = target.get_deployment("blue", "iris")
    assert (after.state, after.pid, after.bundle) == (State.READY, current.pid, None)


def test_delete_is_refused_while_traffic_flows_then_frees_everything(target, blue):
    with pytest.raises(ResourceInUseError, match="100% of live traffic"):
        target.delete_deployment("blue", "iris")
    tagged = target.get_deployment("tagged", "iris")
    target.delete_deployment("tagged", "iris")
    assert "tagged" not in target.get_endpoint("iris").traffic
    server = ServerProcess(ServerKind.AZUREML, tagged.pid, tagged.port, Path("-"))
    assert not server.is_ours() and port_is_free(tagged.port)
    assert not Path(tagged.log_path).parent.parent.exists()
    target.delete_deployment("tagged", "iris")  # idempotent


def test_reconcile_after_an_app_restart_adopts_live_servers_and_fails_dead_ones(
    target, blue, local_settings, registry, iris_example
):
    endpoint = target.get_endpoint("iris")
    twin = target.get_deployment("twin", "iris")
    live = target.get_deployment("blue", "iris")
    # While "the app is down": the front and one server are killed outright.
    os.killpg(endpoint.front_pid, signal.SIGKILL)
    os.killpg(twin.pid, signal.SIGKILL)
    front = ServerProcess(ServerKind.FRONT, endpoint.front_pid, endpoint.front_port, Path("-"))
    assert wait_until(lambda: not front.is_ours())
    dead = ServerProcess(ServerKind.AZUREML, twin.pid, twin.port, Path(twin.log_path))
    assert wait_until(lambda: not dead.is_ours())

    restarted = LocalTarget(local_settings, registry=registry, start_timeout_seconds=120)
    done = restarted.reconcile()

    assert any("iris/blue: adopted" in line for line in done), done
    adopted = restarted.get_deployment("blue", "iris")
    assert (adopted.state, adopted.pid) == (State.READY, live.pid)
    failed = restarted.get_deployment("twin", "iris")
    assert failed.state is State.FAILED
    assert "the process was gone when Deploy Studio started" in failed.reason
    # The front holds no state: it was started again, on its old port.
    again = restarted.get_endpoint("iris")
    assert again.state is State.READY and again.front_pid != endpoint.front_pid
    assert again.scoring_uri == endpoint.scoring_uri
    assert restarted.predict(endpoint="iris", inputs=iris_example)
    # A second reconcile finds everything live: it only adopts.
    assert all("adopted" in line for line in restarted.reconcile())


def test_restart_brings_a_failed_deployment_back(target, blue):
    restarted = target.restart_deployment("twin", "iris")
    assert restarted.state is State.READY, restarted.reason
    assert restarted.reason is None
    with pytest.raises(ResourceInUseError, match="only a failed or stopped"):
        target.restart_deployment("twin", "iris")


def test_stop_all_leaves_no_process_and_no_busy_port(target, blue, home):
    deployments = target.list_deployments()
    ports = [d.port for d in deployments if d.port] + [target.get_endpoint("iris").front_port]
    running = [d for d in deployments if d.state is State.READY]
    assert len(running) >= 4 and processes_under(home)

    stopped = target.stop_all()

    assert len(stopped) == len(running) + 1  # the servers and the front
    assert all(d.state in (State.STOPPED, State.FAILED) for d in target.list_deployments())
    assert target.get_endpoint("iris").state is State.STOPPED
    assert not list(our_processes(home))
    assert wait_until(lambda: not processes_under(home), 5), processes_under(home)
    assert all(port_is_free(port) for port in ports)
    assert target.stop_all() == []
