"""Self-healing (issue 21): kill -9 the processes of a local endpoint and check that it comes
back by itself, as Azure's managed endpoints do with liveness probes.

- a ready model server killed, or hung: its front restarts it, the restart is counted, the
  killed server's group and port are gone, calls answer again;
- a front killed with a server behind it (nobody watches the server then): the server's workers
  die with their master, so its port is free at once; the next repair (any CLI command, or the
  app every few seconds) starts the front again, and the new front restarts the server;
- the process deploying a model killed while its server starts: the next repair adopts the
  server once it answers (no record stuck `starting`), and traffic is refused while it is not;
- a server that fails again at every restart: left failed with the log tail (a crash loop).

Everything counts in the figures' "self-healing" row. One endpoint for the module; the default
run kills each kind a few times, RELIABILITY_LONG=1 (`make reliability`) more.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from deploystudio.deployment.base import DeploymentState as State
from deploystudio.deployment.local.healing import MAX_RESTARTS, restart_count
from deploystudio.deployment.local.health import HUNG_AFTER_SECONDS
from deploystudio.deployment.local.processes import ServerKind, ServerProcess
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.local.transitions import stop_deployment
from deploystudio.errors import DeployStudioError, TrafficError
from tests.conftest import NO_SECRETS, REPO_ROOT
from tests.reliability.conftest import LONG
from tests.reliability.fault_support import (
    Tally,
    alive,
    group_members,
    kill9,
    processes,
    processes_under,
    wait_for,
)
from tests.reliability.figures import FIGURES

SUITE = "self-healing"
ENDPOINT = "healing"
SERVED = "steady"
# The health check (1 s), the first backoff (1 s) and a start of the sleepy model, with room
# for a loaded machine; a hung server is first given HUNG_AFTER_SECONDS.
HEAL_SECONDS = 30.0
# How long a dead group leader's workers may outlive it: they die with it (PR_SET_PDEATHSIG).
WORKERS_GONE_SECONDS = 2.0


def kills(default: int, long: int) -> int:
    return long if LONG else default


def frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1], "mode": ["fast"]})


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("healing")


@pytest.fixture(scope="module")
def ports() -> set[int | None]:
    """Every port a server of the module listened on: none may listen at the end."""
    return set()


@pytest.fixture(scope="module")
def local(local_settings, registry, home, sleepy_model, ports):
    """Endpoint `healing` with deployment `steady` (all traffic); everything is stopped at the
    end and nothing may be left."""
    target = LocalTarget(local_settings, registry=registry, start_timeout_seconds=60)
    try:
        front = target.create_endpoint(ENDPOINT)
        assert front.state is State.READY, front.reason
        record = target.create_deployment(SERVED, str(sleepy_model), ENDPOINT)
        assert record.state is State.READY, (record.reason, record.log_tail)
        target.update_endpoint(ENDPOINT, {"traffic": {SERVED: 100}})
        yield target
    finally:
        tally = Tally(SUITE)
        ports |= {d.port for d in target.list_deployments()}
        ports |= {e.front_port for e in target.list_endpoints()}
        target.stop_all()
        tally.orphans(processes_under(home / "endpoints"), "processes left after stop_all", 5)
        tally.ports(ports, "ports still listening after stop_all")
        tally.check()


def healed(local: LocalTarget, name: str, old_pid: int | None):
    record = local.get_deployment(name, ENDPOINT)
    return record if record.state is State.READY and record.pid != old_pid else None


def calls_answer(local: LocalTarget, tally: Tally, what: str, count: int = 5) -> None:
    """Calls after a heal: every one answers (a failure counts in the 5xx column)."""
    FIGURES.measured(SUITE, "5xx")
    for _ in range(count):
        answer = tally.outcome(lambda: local.predict(SERVED, frame(), ENDPOINT), what)
        if not isinstance(answer, list):
            FIGURES.add(SUITE, "5xx")
            tally.problems.append(f"5xx: {what}: {answer!r}")


def expect_healed(local, ports, tally, old, what: str, seconds: float = HEAL_SECONDS) -> None:
    """`old`'s server died or hung: its group and port go, the front starts it again on a new
    server, the restart is counted, calls answer."""
    ports.add(old.port)
    before = restart_count(old.log_path)
    if not wait_for(lambda: healed(local, SERVED, old.pid), seconds, 0.1):
        record = local.get_deployment(SERVED, ENDPOINT)
        tally.crash(f"{what}: not restarted: {record.state} ({record.reason})")
        restart(local, ports, tally)
        return
    record = local.get_deployment(SERVED, ENDPOINT)
    ports.add(record.port)
    tally.orphans(group_members(old.pid), f"{what}: the old server's group", 2)
    tally.ports(
        [old.port], f"{what}: the old server's port", ours=local.root, settle=WORKERS_GONE_SECONDS
    )
    if restart_count(record.log_path) != before + 1:
        tally.crash(f"{what}: restarts {before} -> {restart_count(record.log_path)}")
    calls_answer(local, tally, what)
    if restart_count(record.log_path) >= MAX_RESTARTS - 1:
        # A fresh run for the next kills (restarts of one run are limited: a crash loop).
        stop_deployment(local.store, record)
        restart(local, ports, tally)


def restart(local: LocalTarget, ports: set[int | None], tally: Tally) -> None:
    record = tally.outcome(lambda: local.restart_deployment(SERVED, ENDPOINT), "restart")
    if not (hasattr(record, "state") and record.state is State.READY):
        tally.crash(f"a manual restart did not bring {SERVED} back: {record!r}")
        return
    ports.add(record.port)


def test_a_killed_or_hung_server_is_restarted_by_its_front(local, ports):
    tally = Tally(SUITE)
    for _ in range(kills(2, 20)):
        tally.case()
        old = local.get_deployment(SERVED, ENDPOINT)
        kill9(old.pid)  # the master only: its worker must go with it
        expect_healed(local, ports, tally, old, "killed")
    for _ in range(kills(1, 3)):
        tally.case()
        old = local.get_deployment(SERVED, ENDPOINT)
        os.killpg(old.pid, signal.SIGSTOP)  # alive, answers nothing
        try:
            expect_healed(local, ports, tally, old, "hung", HUNG_AFTER_SECONDS + HEAL_SECONDS)
        finally:
            kill_what_is_left(old.pid)
    tally.records([SERVED], [d.name for d in local.list_deployments(ENDPOINT)], "deployments")
    tally.check()


def kill_what_is_left(pgid: int) -> None:
    """A frozen group the heal did not kill must not outlive the test (it holds its port)."""
    for pid in group_members(pgid):
        kill9(pid)


def kill_front_and_server(local: LocalTarget, ports: set[int | None], tally: Tally) -> None:
    tally.case()
    endpoint = local.get_endpoint(ENDPOINT)
    old = local.get_deployment(SERVED, ENDPOINT)
    kill9(endpoint.front_pid)
    wait_for(lambda: not alive(endpoint.front_pid), 10)
    kill9(old.pid)  # nobody watches this server now
    wait_for(lambda: not alive(old.pid), 10)
    # No supervisor and no request to wake them: its workers must still go, and its port.
    tally.orphans(
        group_members(old.pid), "unwatched: the killed server's group", WORKERS_GONE_SECONDS
    )
    tally.ports(
        [old.port],
        "unwatched: the killed server's port",
        ours=local.root,
        settle=WORKERS_GONE_SECONDS,
    )
    ports.add(old.port)
    # What the next CLI command (or the app's periodic pass) does.
    notes = tally.outcome(lambda: local.repair(ENDPOINT), "repair")
    after = local.get_endpoint(ENDPOINT)
    if after.state is not State.READY or after.scoring_uri != endpoint.scoring_uri:
        tally.crash(f"repair left the front {after.state} at {after.scoring_uri}: {notes}")
    tally.orphans(group_members(endpoint.front_pid), "the killed front's group", 2)
    expect_healed(local, ports, tally, old, "after its front was killed")


def test_a_killed_front_is_started_again_and_heals_its_server(local, ports):
    tally = Tally(SUITE)
    for _ in range(kills(1, 10)):
        kill_front_and_server(local, ports, tally)
    tally.records([ENDPOINT], [e.name for e in local.list_endpoints()], "endpoints")
    tally.check()


# A deploying process (as the CLI's `deploy` is), killed while its server starts.
_DEPLOYER = """
import sys
from pathlib import Path
from deploystudio.config import load_settings
from deploystudio.deployment.local.target import LocalTarget

home, tracking, name, uri, endpoint = sys.argv[1:6]
settings = load_settings(
    environ={"DEPLOYSTUDIO_HOME": home, "MLFLOW_TRACKING_URI": tracking},
    secrets_path=Path(sys.argv[6]),
)
LocalTarget(settings, start_timeout_seconds=60).create_deployment(name, uri, endpoint)
"""


def kill_deployer(local, ports, tally, local_settings, sleepy_model, home, k: int) -> None:
    tally.case()
    name = f"late-{k}"
    deployer = subprocess.Popen(
        [sys.executable, "-c", _DEPLOYER, str(local_settings.home), local_settings.tracking_uri,
         name, str(sleepy_model), ENDPOINT, str(NO_SECRETS)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def record():
        return next((d for d in local.list_deployments(ENDPOINT) if d.name == name), None)

    wait_for(lambda: record() is not None and record().state is State.STARTING, 60, 0.01)
    kill9(deployer.pid)
    deployer.wait(10)
    started = record()
    if started is None or started.state is not State.STARTING:
        tally.crash(f"{name}: never seen starting: {started}")
        if started is not None:
            local.delete_deployment(name, ENDPOINT)
        return
    ports.add(started.port)
    server = ServerProcess(ServerKind.AZUREML, started.pid, started.port, Path("-"))
    if not server.answers(0.2):
        refused = tally.outcome(
            lambda: local.update_endpoint(ENDPOINT, {"traffic": {SERVED: 50, name: 50}}),
            "traffic to a starting deployment",
        )
        if not isinstance(refused, TrafficError):
            tally.crash(f"{name}: traffic to a starting deployment was accepted: {refused}")
            local.update_endpoint(ENDPOINT, {"traffic": {SERVED: 100}})
    wait_for(lambda: server.answers(0.5), 60, 0.1)
    tally.outcome(lambda: local.repair(ENDPOINT), "repair")
    settled = record()
    if settled is None or (settled.state, settled.pid) != (State.READY, started.pid):
        tally.crash(f"{name}: after repair {settled}")
    found = [d.name for d in local.list_deployments(ENDPOINT) if d.name == name]
    tally.records([name], found, name)
    under = processes_under(home / "endpoints" / ENDPOINT / name)
    groups = {p.pid: p.pgid for p in processes()}
    tally.orphans([p for p in under if groups.get(p) != started.pid], f"{name}: unrecorded", 2)
    tally.outcome(lambda: local.delete_deployment(name, ENDPOINT), "delete")
    tally.orphans(under, f"{name}: processes after delete", 3)
    tally.ports([started.port], f"{name}: port after delete")


def test_a_deploy_killed_while_starting_is_adopted_by_the_next_repair(
    local, ports, local_settings, sleepy_model, home
):
    tally = Tally(SUITE)
    for k in range(kills(1, 5)):
        kill_deployer(local, ports, tally, local_settings, sleepy_model, home, k)
    tally.check()


def test_a_crash_loop_is_left_failed_with_the_log_tail(local, ports):
    tally = Tally(SUITE)
    tally.case()
    record = local.get_deployment(SERVED, ENDPOINT)
    run = Path(record.log_path).parent
    script = run / "score.py"
    script.write_text('raise RuntimeError("broken on purpose")\n' + script.read_text())
    kill9(record.pid)

    def crash_looped() -> bool:
        now = local.get_deployment(SERVED, ENDPOINT)
        return now.state is State.FAILED and "crash loop" in (now.reason or "")

    # Backoffs of 1, 2 and 4 s, each restart failing at import.
    if not wait_for(crash_looped, 90, 0.2):
        now = local.get_deployment(SERVED, ENDPOINT)
        tally.crash(f"no crash loop declared: {now.state} ({now.reason})")
    failed = local.get_deployment(SERVED, ENDPOINT)
    if "broken on purpose" not in (failed.log_tail or ""):
        tally.crash(f"the log tail does not show why: {failed.log_tail!r}")
    tally.orphans(processes_under(run), "processes of the crash-looping run", 2)
    answer = tally.outcome(lambda: local.predict(SERVED, frame(), ENDPOINT), "call")
    if not isinstance(answer, DeployStudioError):
        tally.crash(f"a call to the failed deployment gave {answer!r}")
    restart(local, ports, tally)  # a manual restart: a fresh run from the model
    calls_answer(local, tally, "after the manual restart")
    tally.check()
