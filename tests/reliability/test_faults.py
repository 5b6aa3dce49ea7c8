"""Fault injection (issue 8, "Nothing is lost"): kill -9 every kind of process of Deploy Studio
in different states, squat the ports it wants, stop the registry server mid-listing, and check
after each fault that records are neither lost nor duplicated, and that no process and no port
outlives the cleanup. Everything is real: a seeded SQLite registry, model servers and fronts on
127.0.0.1, batch runners and their workers, a `mlflow server`.

The default run kills each kind of process a few times; RELIABILITY_LONG=1 (`make reliability`)
at least KILLS_LONG times. One endpoint and its deployments are reused across kills: a model
server takes seconds to start.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import random
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from deploystudio import inference_server
from deploystudio.customization.scoring_script import ScriptTemplate, generate_scoring_script
from deploystudio.deployment.base import DeploymentState as State
from deploystudio.deployment.batch.jobs import (
    BatchSettings,
    batch_job_files,
    get_batch_job,
    list_batch_jobs,
    start_batch_job,
    wait_for_batch_job,
)
from deploystudio.deployment.local.healing import MAX_RESTARTS, restart_count
from deploystudio.deployment.local.processes import ServerKind, ServerProcess, wait_ready
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.local.transitions import stop_deployment
from deploystudio.errors import (
    DeployStudioError,
    PredictionWorkerError,
    RegistryUnavailableError,
    ScoringServerError,
)
from deploystudio.payload_formats import ModelInput
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from deploystudio.worker.process import PredictionWorker
from tests.conftest import NO_SECRETS, REPO_ROOT
from tests.reliability.conftest import LONG
from tests.reliability.fault_support import (
    Tally,
    accepts,
    alive,
    children,
    group_members,
    kill9,
    kill9_group,
    processes,
    processes_under,
    wait_for,
)

KILLS_LONG = 20
ENDPOINT = "faults"
SERVED = "sleepy"
IRIS = "models:/iris-classifier/1"
# Bounds on how long an answer may take after a fault (a hang fails the test).
ANSWER_SECONDS = 30.0
# How long the front may take to restart a killed server: the health check (1 s), the first
# backoff (1 s) and a start of the sleepy model.
HEAL_SECONDS = 30.0
REGISTRY_ANSWER_SECONDS = 30.0
rng = random.Random(8)


def kills(default: int) -> int:
    return KILLS_LONG if LONG else default


def sleepy_frame(mode: str, rows: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"x": range(rows), "mode": [mode] * rows})


# -- shared setup ----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def children_before() -> set[int]:
    """This process's children before the module starts (first of its autouse fixtures): under
    pytest-xdist a worker runs other files too, whose long-lived servers are not ours to count."""
    return {p.pid for p in children(os.getpid())}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def target(local_settings, registry, home):
    """The app's LocalTarget; at the end everything is stopped and nothing may be left."""
    target = LocalTarget(local_settings, registry=registry, start_timeout_seconds=60)
    ports: set[int] = set()
    try:
        yield target, ports
    finally:
        tally = Tally("faults: cleanup")
        tally.case()
        for record in target.list_deployments():
            ports.add(record.port)
        for endpoint in target.list_endpoints():
            ports.add(endpoint.front_port)
        target.stop_all()
        tally.orphans(processes_under(home / "endpoints"), "processes left after stop_all", 5)
        tally.ports(ports, "ports still listening after stop_all")
        tally.check()


@pytest.fixture(scope="module")
def endpoint(target, sleepy_model):
    """Endpoint `faults` with one deployment, `sleepy` (all traffic): "fast" rows answer at
    once, "slow" ones take 1.5 s, so a kill can land mid-request."""
    local, ports = target
    front = local.create_endpoint(ENDPOINT)
    assert front.state is State.READY, front.reason
    record = local.create_deployment(SERVED, str(sleepy_model), ENDPOINT)
    assert record.state is State.READY, (record.reason, record.log_tail)
    ports.add(record.port)
    local.update_endpoint(ENDPOINT, {"traffic": {SERVED: 100}})
    return local


def call(local: LocalTarget, mode: str = "fast"):
    return local.predict(SERVED, sleepy_frame(mode), ENDPOINT)


def deployment_names(local: LocalTarget) -> list[str]:
    return [d.name for d in local.list_deployments(ENDPOINT)]


def timed(call, *args):
    """`call(*args)` and the seconds it took; an exception is returned, for the caller to
    judge."""
    started = time.monotonic()
    try:
        return call(*args), time.monotonic() - started
    except Exception as exc:
        return exc, time.monotonic() - started


class Background:
    """`call(*args)` in a thread: `result()` is (value or exception, seconds), or None while it
    has not returned within the wait."""

    def __init__(self, call, *args) -> None:
        self._result: list = []
        self._thread = threading.Thread(target=lambda: self._result.append(timed(call, *args)))
        self._thread.start()

    def result(self, seconds: float = ANSWER_SECONDS + 5):
        self._thread.join(seconds)
        return self._result[0] if self._result else None


def state_of(local: LocalTarget, name: str) -> State | None:
    return next((d.state for d in local.list_deployments(ENDPOINT) if d.name == name), None)


def restart_ready(local: LocalTarget, name: str, tally: Tally, ports: set[int]):
    record = tally.outcome(partial(local.restart_deployment, name, ENDPOINT), f"restart {name}")
    if not (hasattr(record, "state") and record.state is State.READY):
        tally.crash(f"restart of {name} did not bring it back: {record!r}")
        return None
    ports.add(record.port)
    return record


def healed(local: LocalTarget, name: str, old_pid: int):
    """The record once its front has it ready on another server, else None."""
    record = local.get_deployment(name, ENDPOINT)
    return record if record.state is State.READY and record.pid != old_pid else None


def settle_after_server_kill(local, name, old, tally, ports, what) -> None:
    """After `old`'s server was killed: its whole group goes and its port closes at once (its
    workers die with their master), and the endpoint's front restarts it on another port."""
    wait_for(lambda: not alive(old.pid), 10)
    tally.orphans(group_members(old.pid), f"{what}: the killed server's group", 2)
    tally.ports([old.port], f"{what}: the killed server's port", ours=local.root, settle=2)
    if not wait_for(lambda: healed(local, name, old.pid), HEAL_SECONDS, 0.1):
        record = local.get_deployment(name, ENDPOINT)
        tally.crash(f"{what}: the front did not restart {name}: {record.state} ({record.reason})")
        restart_ready(local, name, tally, ports)
        return
    record = local.get_deployment(name, ENDPOINT)
    ports.add(record.port)
    if restart_count(record.log_path) >= MAX_RESTARTS - 1:
        # Restarts are allowed MAX_RESTARTS per run before a crash loop is declared: the next
        # kills start from a fresh run, as after a fix and a manual restart.
        stop_deployment(local.store, record)
        restart_ready(local, name, tally, ports)


def judge_answer(tally: Tally, outcome, expected: type, what: str) -> None:
    """A call hit by a fault must end in `expected` (a DeployStudioError) within its bound."""
    answer, seconds = outcome if outcome else (None, float("inf"))
    if not isinstance(answer, expected) or seconds > ANSWER_SECONDS:
        tally.crash(f"{what}: got {answer!r} after {seconds:.1f} s")


# -- model servers ---------------------------------------------------------------------------


def kill_ready_server(local, tally, ports) -> None:
    # Only the master dies: its workers must follow it by themselves.
    old = local.get_deployment(SERVED, ENDPOINT)
    tally.case()
    kill9(old.pid)
    answer = timed(call, local)
    if not isinstance(answer[0], list):
        judge_answer(tally, answer, DeployStudioError, "a call after the kill")
    settle_after_server_kill(local, SERVED, old, tally, ports, "ready")


def kill_starting_server(local, tally, ports) -> None:
    # The restart that waits for it sees the server die and marks it failed.
    tally.case()
    stop_deployment(local.store, local.get_deployment(SERVED, ENDPOINT))
    starter = Background(local.restart_deployment, SERVED, ENDPOINT)
    assert wait_for(lambda: state_of(local, SERVED) is State.STARTING, 30), state_of(local, SERVED)
    starting = local.get_deployment(SERVED, ENDPOINT)
    time.sleep(rng.uniform(0, 1.5))
    kill9(starting.pid)
    if starter.result() is None:
        tally.crash("the restart did not return after its server was killed")
    record = local.get_deployment(SERVED, ENDPOINT)
    tally.orphans(group_members(starting.pid), "starting: the killed server's group")
    if record.state is State.READY:  # the kill landed just after it was ready
        settle_after_server_kill(local, SERVED, record, tally, ports, "starting")
        return
    if record.state is not State.FAILED or "stopped before it was ready" not in (
        record.reason or ""
    ):
        tally.crash(f"while starting: the record is {record.state} ({record.reason})")
    restart_ready(local, SERVED, tally, ports)


def test_kill_model_server_when_ready_and_while_starting(endpoint, target):
    local, ports = target
    tally = Tally("faults: model server")
    for _ in range(kills(1)):
        kill_ready_server(local, tally, ports)
        kill_starting_server(local, tally, ports)
        assert call(local) == [0]
    tally.records([SERVED], deployment_names(local), "deployments")
    tally.check()


def kill_answering_server(local, tally, ports) -> None:
    old = local.get_deployment(SERVED, ENDPOINT)
    tally.case()
    caller = Background(call, local, "slow")
    time.sleep(rng.uniform(0.3, 1.0))
    # The worker answering the request dies with its master (the group, as when the kernel's
    # OOM killer ends a container).
    kill9_group(old.pid)
    judge_answer(tally, caller.result(), DeployStudioError, "the call in progress")
    settle_after_server_kill(local, SERVED, old, tally, ports, "mid-request")


def test_kill_model_server_while_it_answers(endpoint, target):
    local, ports = target
    tally = Tally("faults: model server")
    for _ in range(kills(1)):
        kill_answering_server(local, tally, ports)
        assert call(local) == [0]
    tally.records([SERVED], deployment_names(local), "deployments")
    tally.check()


# -- endpoint fronts -------------------------------------------------------------------------


def kill_front(local, tally, ports, mid_request: bool) -> None:
    before = local.get_endpoint(ENDPOINT)
    ports.add(before.front_port)
    tally.case()
    caller = None
    if mid_request:
        caller = Background(call, local, "slow")
        time.sleep(rng.uniform(0.2, 1.0))
    kill9(before.front_pid)
    if caller is not None:
        judge_answer(tally, caller.result(), ScoringServerError, "the call in progress")
    answer = timed(call, local)
    judge_answer(tally, answer, ScoringServerError, "a call to the dead front")
    wait_for(lambda: not alive(before.front_pid), 10)
    local.reconcile()
    after = local.get_endpoint(ENDPOINT)
    if after.state is not State.READY or after.scoring_uri != before.scoring_uri:
        tally.crash(f"reconcile left the endpoint {after.state} at {after.scoring_uri}")
    tally.orphans(group_members(before.front_pid), "the killed front's group")


def test_kill_front_idle_and_mid_request(endpoint, target):
    local, ports = target
    tally = Tally("faults: front")
    for k in range(kills(2)):
        kill_front(local, tally, ports, mid_request=bool(k % 2))
        assert call(local) == [0]
    tally.records([SERVED], deployment_names(local), "deployments")
    tally.records([ENDPOINT], [e.name for e in local.list_endpoints()], "endpoints")
    tally.check()


# -- busy ports ------------------------------------------------------------------------------


class _Squatter(http.server.BaseHTTPRequestHandler):
    """Another program on the port, answering 200 to everything (the worst case: it looks
    ready to a readiness probe)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"someone else")

    def log_message(self, *args) -> None:
        pass


def port_users(port: int) -> list[str]:
    """The sockets on `port` and the processes that hold them (for a failure message)."""
    lines = [
        line
        for line in Path("/proc/net/tcp").read_text().splitlines()
        if f":{port:04X} " in line.split(None, 2)[1] + " "
    ]
    inodes = {f"socket:[{line.split()[9]}]" for line in lines}
    holders = []
    for info in processes():
        with contextlib.suppress(OSError):
            fds = {os.readlink(fd) for fd in Path(f"/proc/{info.pid}/fd").iterdir()}
            if fds & inodes:
                holders.append(f"{info.pid} {info.command[:120]}")
    return lines + holders


@contextlib.contextmanager
def squatting(port: int):
    deadline = time.monotonic() + 5
    while True:
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Squatter)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} stays taken: {port_users(port)}") from None
            time.sleep(0.2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_squatted_port_fails_the_start_clearly_or_moves(
    endpoint, target, local_settings, registry, home
):
    local, ports = target
    tally = Tally("faults: busy port")
    # The front's port, taken while the front is down: reconcile starts it on another port.
    before = local.get_endpoint(ENDPOINT)
    tally.case()
    kill9(before.front_pid)
    wait_for(lambda: not alive(before.front_pid), 10)
    with squatting(before.front_port):
        local.reconcile()
        after = local.get_endpoint(ENDPOINT)
        if after.state is not State.READY or after.front_port == before.front_port:
            tally.crash(f"front on a squatted port: {after.state} {after.scoring_uri}")
        if after.scoring_uri != f"http://127.0.0.1:{after.front_port}/score":
            tally.crash(f"half-written endpoint record: {after}")
        ports.add(after.front_port)
        assert call(local) == [0]
    tally.orphans(group_members(before.front_pid), "the killed front's group")

    # A deployment server's port, taken before its server binds it: the start fails with a
    # clear message instead of taking the other program for a ready server.
    iris = local_model_path(IRIS, local_settings, registry)
    folder = home / "squat"
    script = folder / "score.py"
    script.parent.mkdir()
    script.write_text(generate_scoring_script(ScriptTemplate.NO_CODE, iris))
    model_dir = inference_server.stage_model(iris, folder / "models", folder_name="model")
    port = inference_server.free_port()
    with squatting(port):
        tally.case()
        handle = inference_server.start(
            script, model_dir, folder / "server.log", port=port, detached=True
        )
        process = ServerProcess(ServerKind.AZUREML, handle.pid, port, folder / "server.log")
        outcome, _ = timed(wait_ready, process, 60)
        if not isinstance(outcome, ScoringServerError):
            tally.crash(f"a server whose port was taken was reported ready: {outcome!r}")
        elif "in use" not in str(outcome).lower() and "taken" not in str(outcome).lower():
            tally.crash(f"the message does not say the port is busy: {outcome}")
        process.stop(1)
        tally.orphans(group_members(handle.pid), "the server that could not bind")
        assert accepts(port)  # the other program keeps its port
    tally.records([SERVED], deployment_names(local), "deployments")
    tally.check()


# -- the app ---------------------------------------------------------------------------------

_APP = """
import sys
from pathlib import Path
from deploystudio.config import load_settings
from deploystudio.deployment.local.target import LocalTarget

home, tracking, name, uri, endpoint = sys.argv[1:6]
settings = load_settings(
    environ={"DEPLOYSTUDIO_HOME": home, "MLFLOW_TRACKING_URI": tracking},
    secrets_path=Path(sys.argv[6]),
)
target = LocalTarget(settings, start_timeout_seconds=60)
print("begin", flush=True)
record = target.create_deployment(name, uri, endpoint)
print("created", record.state.value, flush=True)
"""
# Where the app is killed: when its record reaches this state (None: at a random moment).
_APP_KILL_AT = (State.PENDING, State.STARTING, None, State.READY)


def kill_app(local, tally, ports, local_settings, home, k: int) -> str:
    """Deploy from a separate app process, kill -9 it, reconcile; what state it was killed in."""
    name = f"app-{k}"
    kill_at = _APP_KILL_AT[k % len(_APP_KILL_AT)]
    tally.case()
    app = subprocess.Popen(
        [sys.executable, "-c", _APP, str(local_settings.home), local_settings.tracking_uri,
         name, IRIS, ENDPOINT, str(NO_SECRETS)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    if kill_at is None:
        time.sleep(rng.uniform(1.0, 6.0))
    else:
        wanted = (kill_at, State.READY, State.FAILED)
        wait_for(lambda: state_of(local, name) in wanted or app.poll() is not None, 60, 0.01)
    seen = str(state_of(local, name))
    kill9(app.pid)
    out = app.communicate(timeout=10)[0]
    created = [name] if "created" in out else []
    # The restarted app: reconcile settles the record at once.
    notes = local.reconcile()
    record = next((d for d in local.list_deployments(ENDPOINT) if d.name == name), None)
    if record is not None:
        ports.add(record.port)
        if record.state not in (State.READY, State.FAILED):
            tally.crash(f"{name} left {record.state} after reconcile: {notes}")
        elif record.state is State.FAILED and not record.reason:
            tally.crash(f"{name} failed without a reason")
        elif (
            record.state is State.READY
            and not ServerProcess(ServerKind.AZUREML, record.pid, record.port, Path("-")).answers()
        ):
            tally.crash(f"{name} adopted as ready but its server does not answer")
    tally.records(created, [n for n in deployment_names(local) if n == name], name)
    # After reconcile, no server runs there but the one the record names (if any).
    folder = home / "endpoints" / ENDPOINT / name
    named = record.pid if record is not None and record.state is State.READY else None
    running = {p.pid: p.pgid for p in processes()}
    under = processes_under(folder)
    tally.orphans([p for p in under if running.get(p) != named], f"{name}: unrecorded", 3)
    # Nothing of the interrupted start may outlive its deletion.
    local.delete_deployment(name, ENDPOINT)
    tally.orphans(under, f"{name}: processes after delete", 3)
    if record is not None:
        tally.ports([record.port], f"{name}: port after delete")
    return seen


def test_kill_the_app_mid_deploy(endpoint, target, local_settings, home):
    local, ports = target
    tally = Tally("faults: app")
    seen = [kill_app(local, tally, ports, local_settings, home, k) for k in range(kills(2))]
    tally.records([SERVED], deployment_names(local), "deployments")
    print("app killed when its record was:", seen)
    tally.check()


# -- prediction workers ----------------------------------------------------------------------


def kill_worker(worker: PredictionWorker, sleepy_model: Path, tally: Tally) -> None:
    tally.case()
    caller = Background(worker.predict, sleepy_model, ModelInput(sleepy_frame("slow", 3)))
    wait_for(lambda: worker.pid is not None, 10)
    pid = worker.pid
    time.sleep(rng.uniform(0.1, 1.2))
    kill9(pid)
    outcome = caller.result()
    judge_answer(tally, outcome, PredictionWorkerError, "the call whose worker was killed")
    if outcome and not ("SIGKILL" in str(outcome[0]) and "restart" in str(outcome[0])):
        tally.crash(f"the message does not say it was killed and restarts: {outcome[0]}")
    # The next call starts a new worker and answers.
    fast = ModelInput(sleepy_frame("fast"))
    again = tally.outcome(partial(worker.predict, sleepy_model, fast), "next predict")
    if isinstance(again, DeployStudioError) or worker.pid in (None, pid):
        tally.crash(f"the next call did not restart the worker: {again!r}")
    tally.orphans([pid], "the killed worker")


def test_kill_prediction_worker_mid_predict(sleepy_model, home):
    tally = Tally("faults: prediction worker")
    worker = PredictionWorker(home / "worker.log", timeout_seconds=60)
    try:
        worker.predict(sleepy_model, ModelInput(sleepy_frame("fast")))  # loaded
        for _ in range(kills(1)):
            kill_worker(worker, sleepy_model, tally)
    finally:
        pids = [worker.pid] if worker.pid else []
        worker.stop()
        tally.orphans(pids, "the worker after stop", 3)
    tally.check()


# -- batch jobs ------------------------------------------------------------------------------


def write_inputs(folder: Path, files: int) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        sleepy_frame("slow").to_csv(folder / f"f{i:02d}.csv", index=False)


def check_predictions(tally: Tally, local_settings, job_id: str, what: str) -> list[str]:
    """Every done file's rows once in predictions.csv, and nothing else; the done files."""
    job = get_batch_job(local_settings, job_id)
    done = sorted(f.name for f in batch_job_files(local_settings, job_id) if f.state == "done")
    csv = job.output_path
    rows = pd.read_csv(csv)["file_name"].tolist() if csv and csv.is_file() else []
    lost = [n for n in done if rows.count(n) < 1]
    extra = [n for n in set(rows) if rows.count(n) > 1 or n not in done]
    tally.count(
        "records lost or duplicated",
        len(lost) + len(extra),
        f"{what}: predictions.csv lost {lost}, duplicated or unfinished {extra}",
    )
    return done


def workers_of(pid: int) -> list[int]:
    return [p.pid for p in children(pid) if "prediction_worker" in p.command]


def files_done(local_settings, job_id: str) -> int:
    return get_batch_job(local_settings, job_id).files_done


def kill_runner(local_settings, sleepy_model, folder: Path, tally: Tally) -> None:
    tally.case()
    write_inputs(folder, 6)
    job = start_batch_job(
        local_settings, str(sleepy_model), folder, restrict_input=False,
        batch_settings=BatchSettings(mini_batch_size=1, max_concurrency_per_instance=2),
    )  # fmt: skip
    at = rng.randint(0, 3 if LONG else 1)
    assert wait_for(
        lambda: files_done(local_settings, job.id) >= at and workers_of(job.pid), 90, 0.05
    ), get_batch_job(local_settings, job.id)
    workers = workers_of(job.pid)
    kill9(job.pid)
    wait_for(lambda: not alive(job.pid), 10)
    after = get_batch_job(local_settings, job.id)
    if after.state not in ("failed", "completed") or (
        after.state == "failed" and "ended before the job finished" not in after.reason
    ):
        tally.crash(f"after the runner's kill the job is {after.state}: {after.reason}")
    done = check_predictions(tally, local_settings, job.id, folder.name)
    if after.state == "failed" and f"{len(done)} of 6 file(s)" not in after.reason:
        tally.crash(f"the reason does not count the kept files: {after.reason}")
    # Its workers lose their runner: they must end too, not score on for nobody.
    tally.orphans(workers, "the killed runner's workers")
    jobs = [j.id for j in list_batch_jobs(local_settings, 500) if j.id == job.id]
    tally.records([job.id], jobs, "job records")


def test_kill_batch_runner_mid_job(local_settings, sleepy_model, home):
    tally = Tally("faults: batch runner")
    for k in range(kills(2)):
        kill_runner(local_settings, sleepy_model, home / "batch-runner" / str(k), tally)
    tally.check()


def kill_batch_worker(local_settings, job, tally: Tally) -> int:
    """Kill the job's worker while it scores a mini-batch; its pid."""
    tally.case()
    # A worker that just finished a file is scoring the next one (1.5 s a file).
    done = files_done(local_settings, job.id)
    assert wait_for(lambda: files_done(local_settings, job.id) > done, 90, 0.05), done
    time.sleep(rng.uniform(0.2, 0.8))
    workers = workers_of(job.pid)
    assert workers, "no worker to kill"
    kill9(workers[0])
    return workers[0]


def test_kill_batch_worker_mid_mini_batch(local_settings, sleepy_model, home):
    tally = Tally("faults: batch worker")
    count = kills(1)
    folder = home / "batch-worker"
    write_inputs(folder, count + 2)
    job = start_batch_job(
        local_settings, str(sleepy_model), folder, restrict_input=False,
        batch_settings=BatchSettings(mini_batch_size=1, max_retries=2),
    )  # fmt: skip
    killed = [kill_batch_worker(local_settings, job, tally) for _ in range(count)]
    final = wait_for_batch_job(local_settings, job.id, timeout_seconds=180)
    if final.state != "completed" or final.files_done != count + 2:
        tally.crash(f"the job ended {final.state} ({final.reason})")
    files = batch_job_files(local_settings, job.id)
    retried = [f for f in files if f.attempts > 1]
    if len(retried) != count:
        tally.crash(f"{len(retried)} file(s) retried for {count} kills: {files}")
    check_predictions(tally, local_settings, job.id, "after worker kills")
    tally.orphans(killed, "the killed workers")
    tally.orphans(processes_under(final.work_dir), "the job's processes after it finished")
    tally.check()


# -- the registry server ---------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def registry_server(tmp_path_factory):
    """A real `mlflow server` on loopback, started with the module so that it boots while the
    other scenarios run."""
    tmp_path = tmp_path_factory.mktemp("registry-server")
    port = inference_server.free_port()
    log = (tmp_path / "mlflow-server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--default-artifact-root", str(tmp_path / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        kill9_group(server.pid)
        server.wait(10)
        log.close()


def test_registry_server_stopped_mid_listing(registry_server):
    server, uri = registry_server
    tally = Tally("faults: registry down")
    port = int(uri.rsplit(":", 1)[1])
    assert wait_for(lambda: accepts(port), 60, 0.2), "mlflow server did not start"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for i in range(3):
        client.create_registered_model(f"model-{i}")
    registry = Registry(uri)
    assert wait_for(lambda: len(registry.list_models().models) == 3, 30, 0.5)
    if LONG:  # about 2 x MLFLOW_HTTP_REQUEST_TIMEOUT: too slow for the default run
        # A hung server (frozen: it accepts and never answers) is answered within the bound.
        tally.case()
        os.killpg(server.pid, signal.SIGSTOP)
        try:
            answer, seconds = timed(registry.list_models)
        finally:
            os.killpg(server.pid, signal.SIGCONT)
        print(f"registry hung: the listing answered in {seconds:.1f} s: {answer!r}")
        if not isinstance(answer, RegistryUnavailableError) or seconds > REGISTRY_ANSWER_SECONDS:
            tally.crash(f"the listing on a hung registry gave {answer!r} in {seconds:.1f} s")
        assert wait_for(lambda: len(registry.list_models().models) == 3, 30, 0.5)
    tally.case()
    outcomes: list = []
    stop = threading.Event()

    def lister():
        while not stop.is_set():
            outcomes.append(timed(lambda: registry.list_models(page_size=1)))
            if isinstance(outcomes[-1][0], Exception):
                return

    thread = threading.Thread(target=lister)
    thread.start()
    time.sleep(0.5)
    members = group_members(server.pid)
    kill9_group(server.pid)  # the server and its workers, mid-listing
    thread.join(REGISTRY_ANSWER_SECONDS * 3)
    stop.set()
    slowest = max(seconds for _, seconds in outcomes)
    last, _ = outcomes[-1]
    if not isinstance(last, RegistryUnavailableError) or "did not answer" not in str(last):
        tally.crash(f"the listing after the stop gave {last!r}")
    for answer, _ in outcomes:
        if not isinstance(answer, DeployStudioError) and len(getattr(answer, "models", [])) != 1:
            tally.crash(f"a listing gave {answer!r}")
    if slowest > REGISTRY_ANSWER_SECONDS:
        tally.crash(f"a listing took {slowest:.1f} s")
    # Once down, the next listing answers too, within the same bound.
    tally.case()
    answer, seconds = timed(registry.list_models)
    print(f"registry down: slowest listing {slowest:.1f} s, next one {seconds:.1f} s")
    if not isinstance(answer, RegistryUnavailableError) or seconds > REGISTRY_ANSWER_SECONDS:
        tally.crash(f"the listing on a stopped registry gave {answer!r} in {seconds:.1f} s")
    tally.orphans(members, "the registry server's processes")
    tally.ports([port], "the registry server's port")
    tally.records([], [], "no records here")
    tally.check()


def test_no_process_of_the_suite_outlives_it(children_before):
    """Children of this test process that are still alive (every scenario cleans up its own)."""
    tally = Tally("faults: cleanup")
    tally.case()
    left = [
        p.pid
        for p in children(os.getpid())
        if "pytest" not in p.command and p.pid not in children_before
    ]
    tally.orphans(left, "children of the test process", 5)
    tally.check()
