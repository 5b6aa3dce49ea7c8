"""Races on one endpoint name: many threads in several processes (the CLI, other app servers)
and threads of this process going through the app's operation runner (users of one server),
all at once against one real deployment store.

Each attempt creates the endpoint, creates a deployment, sets traffic or regenerates a key.
Whatever the interleaving: one create of each name succeeds and every other attempt gets a
clear DeployStudioError (name taken, in progress by ..., no such deployment), never a raw
sqlite "database is locked"; the store holds no duplicate; traffic read at any moment sums to
100 or 0; the audit history has exactly one entry per change that succeeded, signed by whoever
made it.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from deploystudio.deployment.actors import acting_as
from deploystudio.deployment.operations import OperationRunner, OperationState
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import DeployStudioError, EndpointNotFoundError, OperationInProgressError
from tests.reliability.conftest import LONG
from tests.reliability.figures import FIGURES

SUITE = "races"
ENDPOINT = "race-ep"
SPELLINGS = ("race-ep", "RACE-EP", "Race-Ep")  # one name: names ignore case
DEPLOYMENTS = ("blue", "green")
TRAFFIC_CHOICES = (
    {"blue": 100},
    {"green": 100},
    {"blue": 50, "green": 50},
    {"blue": 0, "green": 0},
    {"blue": 70, "green": 30},
)
PROCESSES = 3
THREADS_PER_PROCESS = 6 if not LONG else 12
RUNNER_THREADS = 6 if not LONG else 12
ROUNDS = 3 if not LONG else 10  # traffic + key attempts per thread after the two creates
START_DELAY_S = 4.0  # long enough for every process to be up and waiting

Outcome = tuple[str, str, str]  # (operation, "ok" or the error's type and message, actor)


def _attempt(store: DeploymentStore, op: str, rng: random.Random) -> None:
    if op == "create_endpoint":
        store.create_endpoint(rng.choice(SPELLINGS))
    elif op == "create_deployment":
        store.create_deployment(rng.choice(SPELLINGS), rng.choice(DEPLOYMENTS), "models:/iris/1")
    elif op == "set_traffic":
        store.set_traffic(ENDPOINT, rng.choice(TRAFFIC_CHOICES))
    else:
        store.regenerate_key(ENDPOINT, rng.choice(("primary", "secondary")))


def _plan() -> list[str]:
    return ["create_endpoint", "create_deployment"] + ["set_traffic", "regenerate_key"] * ROUNDS


def _outcome(op: str, actor: str, exc: BaseException | None) -> Outcome:
    if exc is None:
        return (op, "ok", actor)
    kind = "clear" if isinstance(exc, DeployStudioError) else "RAW"
    return (op, f"{kind} {type(exc).__name__}: {exc}", actor)


def _store_thread(db: Path, actor: str, seed: int, start_at: float) -> list[Outcome]:
    """One CLI-like user: its own store object, straight calls, in its own thread."""
    rng = random.Random(seed)
    store = DeploymentStore(db)
    outcomes = []
    time.sleep(max(0.0, start_at - time.time()))
    with acting_as(actor):
        for op in _plan():
            try:
                _attempt(store, op, rng)
            except BaseException as exc:  # every kind is counted; raw ones fail the test
                outcomes.append(_outcome(op, actor, exc))
            else:
                outcomes.append(_outcome(op, actor, None))
    return outcomes


def race_in_process(index: int, db: str, start_at: float) -> list[Outcome]:
    """Run in a child process: several threads, all starting at `start_at`."""
    results: list[list[Outcome]] = [[] for _ in range(THREADS_PER_PROCESS)]

    def run(thread: int) -> None:
        actor = f"p{index}-t{thread}"
        results[thread] = _store_thread(Path(db), actor, index * 1000 + thread, start_at)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS_PER_PROCESS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [outcome for found in results for outcome in found]


def _runner_thread(
    runner: OperationRunner, store: DeploymentStore, thread: int, start_at: float
) -> list[Outcome]:
    """One user of this app server: every change goes through the shared runner, which takes
    one change per endpoint at a time; the others are told who is busy with it."""
    rng = random.Random(thread)
    actor = f"app-user-{thread}@example.com"
    outcomes = []
    time.sleep(max(0.0, start_at - time.time()))
    for op in _plan():
        try:
            started = runner.submit(
                f"endpoint {ENDPOINT}",
                op,
                lambda _, op=op: _attempt(store, op, rng),
                actor=actor,
            )
        except OperationInProgressError as exc:
            outcomes.append(_outcome(op, actor, exc))
            continue
        finished = runner.wait(started.id, 30)
        if finished.state is OperationState.SUCCEEDED:
            outcomes.append(_outcome(op, actor, None))
        else:
            kind = (
                "clear"
                if finished.error_type
                and not finished.error.endswith("The app log has the details.")
                else "RAW"
            )
            outcomes.append((op, f"{kind} {finished.error_type}: {finished.error}", actor))
    return outcomes


def _watch_traffic(store: DeploymentStore, stop: threading.Event, bad: list[str]) -> int:
    reads = 0
    while not stop.is_set():
        try:
            endpoint = store.get_endpoint(ENDPOINT)
        except EndpointNotFoundError:
            continue
        except Exception as exc:  # a raw error while reading is a finding too
            bad.append(f"read failed: {type(exc).__name__}: {exc}")
            continue
        reads += 1
        total = sum(endpoint.traffic.values())
        if total not in (0, 100):
            bad.append(f"traffic {endpoint.traffic} sums to {total}")
        time.sleep(0.002)
    return reads


@contextmanager
def _plain_main() -> Iterator[None]:
    """A bare __main__ while the pool starts: spawned children re-run the parent's __main__ file,
    and after an AppTest in the same process (an xdist worker runs many files) that is a page
    script, which fails outside Streamlit. The children need only this module, by name."""
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


def test_many_concurrent_changes_to_one_endpoint_keep_the_store_consistent(tmp_path):
    db = tmp_path / "deployments.db"
    store = DeploymentStore(db, actor="race-test")
    runner = OperationRunner(max_workers=4)
    start_at = time.time() + START_DELAY_S
    stop, bad_reads = threading.Event(), []
    watcher_reads: list[int] = []
    watcher = threading.Thread(
        target=lambda: watcher_reads.append(_watch_traffic(store, stop, bad_reads))
    )
    watcher.start()
    outcomes: list[Outcome] = []
    try:
        spawn = multiprocessing.get_context("spawn")  # no fork of this threaded process
        with _plain_main(), ProcessPoolExecutor(PROCESSES, mp_context=spawn) as pool:
            futures = [pool.submit(race_in_process, i, str(db), start_at) for i in range(PROCESSES)]
            local: list[list[Outcome]] = [[] for _ in range(RUNNER_THREADS)]

            def run(thread: int) -> None:
                local[thread] = _runner_thread(runner, store, thread, start_at)

            threads = [threading.Thread(target=run, args=(t,)) for t in range(RUNNER_THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for future in futures:
                outcomes.extend(future.result(timeout=120))
            for found in local:
                outcomes.extend(found)
    finally:
        stop.set()
        watcher.join()
        runner.shutdown()

    raw = [o for o in outcomes if o[1].startswith("RAW")]
    locked = [o for o in outcomes if "database is locked" in o[1]]
    ok = Counter(op for op, result, _ in outcomes if result == "ok")
    refusals = Counter(result.split(":")[0] for _, result, _ in outcomes if result != "ok")

    # The store afterwards: one endpoint, one row per deployment, history = successes.
    endpoints = [e for e in store.list_endpoints() if e.name.lower() == ENDPOINT]
    deployments = store.list_deployments(ENDPOINT)
    history = store.history(ENDPOINT, limit=1_000_000)
    audited = Counter(
        ("create_deployment" if "/" in e.target else "create_endpoint")
        if e.action == "create"
        else e.action
        for e in history
    )
    winner = [actor for op, result, actor in outcomes if op == "create_endpoint" and result == "ok"]
    created_by = [e.actor for e in history if e.action == "create" and "/" not in e.target]
    lost_or_duplicated = (
        abs(len(endpoints) - 1)
        + abs(len(deployments) - len({d.name.lower() for d in deployments}))
        + abs(audited["create_endpoint"] - ok["create_endpoint"])
        + abs(audited["create_deployment"] - ok["create_deployment"])
        + abs(audited["regenerate_key"] - ok["regenerate_key"])
    )

    FIGURES.measured(SUITE, "cases tried", "crashes", "records lost or duplicated")
    FIGURES.add(SUITE, "cases tried", len(outcomes))
    FIGURES.add(SUITE, "crashes", len(raw) + len(bad_reads))
    FIGURES.add(SUITE, "records lost or duplicated", lost_or_duplicated)

    assert len(outcomes) >= 100
    assert not raw and not locked, (raw + locked)[:5]
    assert not bad_reads, bad_reads[:5]
    assert watcher_reads and watcher_reads[0] > 0
    assert ok["create_endpoint"] == 1 and len(endpoints) == 1
    assert ok["create_deployment"] == len(DEPLOYMENTS) == len(deployments)
    assert lost_or_duplicated == 0, (audited, ok)
    # The one create is signed by the one thread that made it, whichever process it was in.
    assert created_by == winner
    assert sum(store.get_endpoint(ENDPOINT).traffic.values()) in (0, 100)
    # Most attempts lost a race or met a busy endpoint, and were told so in plain words.
    assert refusals["clear NameTakenError"] >= len(outcomes) // len(_plan()) - 2
    assert refusals["clear OperationInProgressError"] > 0
