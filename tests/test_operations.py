"""The operation runner: work off the caller's thread, one operation per subject at a time."""

from __future__ import annotations

import threading

import pytest

from deploystudio.deployment.actors import acting_as
from deploystudio.deployment.operations import OperationRunner, OperationState
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import NameTakenError, OperationInProgressError


@pytest.fixture
def runner():
    runner = OperationRunner(max_workers=2)
    yield runner
    runner.shutdown()


def test_work_runs_with_progress_and_its_result_is_kept(runner):
    def work(progress):
        progress("starting the server")
        progress("server ready")
        return {"deployment": "blue"}

    started = runner.submit("endpoint:shop", "Deploy blue", work, actor="ana")
    assert started.state is OperationState.RUNNING
    finished = runner.wait(started.id, timeout_seconds=5)
    assert finished.state is OperationState.SUCCEEDED
    assert finished.messages == ("starting the server", "server ready")
    assert finished.result == {"deployment": "blue"}
    assert finished.actor == "ana" and finished.finished_at >= finished.started_at
    assert runner.running() == []


def test_a_second_change_to_the_same_subject_is_refused_while_the_first_runs(runner):
    release = threading.Event()
    first = runner.submit("endpoint:shop", "Deploy blue", lambda _: release.wait(5), actor="ana")
    with pytest.raises(OperationInProgressError, match=r"'Deploy blue' is in progress.*by ana"):
        runner.submit("endpoint:shop", "Deploy green", lambda _: None, actor="bob")
    # Another endpoint is not blocked.
    other = runner.submit("endpoint:bank", "Deploy red", lambda _: "done")
    assert runner.wait(other.id, 5).result == "done"
    release.set()
    assert runner.wait(first.id, 5).state is OperationState.SUCCEEDED
    # Once it has finished, the subject takes new work.
    again = runner.submit("endpoint:shop", "Deploy green", lambda _: "green")
    assert runner.wait(again.id, 5).result == "green"


def test_a_double_click_runs_the_work_once(runner):
    calls = []
    release = threading.Event()

    def deploy(_):
        calls.append(1)
        release.wait(5)

    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(runner.submit("endpoint:shop", "Deploy blue", deploy).id)
        except OperationInProgressError:
            outcomes.append("refused")
    release.set()
    runner.wait(outcomes[0], 5)
    assert outcomes[1] == "refused" and calls == [1]


def test_user_errors_keep_their_message_and_unexpected_ones_name_their_type(runner):
    def taken(_):
        raise NameTakenError("Endpoint 'shop' already exists: choose another name.")

    def broken(_):
        raise KeyError("port")

    failed = runner.wait(runner.submit("a", "Create shop", taken).id, 5)
    assert failed.state is OperationState.FAILED
    assert failed.error == "Endpoint 'shop' already exists: choose another name."
    assert failed.error_type == "NameTakenError"
    crashed = runner.wait(runner.submit("b", "Create bank", broken).id, 5)
    assert crashed.state is OperationState.FAILED
    assert crashed.error.startswith("KeyError: 'port'") and "log" in crashed.error
    assert not runner.running()


def test_recent_lists_the_latest_first_and_filters_by_subject(runner):
    ids = [runner.submit(f"endpoint:{n}", f"Op {n}", lambda _: None).id for n in ("a", "b", "a")]
    for op_id in ids:
        runner.wait(op_id, 5)
    assert [op.id for op in runner.recent()] == ids[::-1]
    assert [op.title for op in runner.recent("endpoint:a")] == ["Op a", "Op a"]


def test_each_operation_signs_its_audit_entries_with_its_own_actor(runner, tmp_path):
    # One store shared by every operation, as in the app; it was opened by the OS user.
    store = DeploymentStore(tmp_path / "deployments.db", actor="os-user")
    both_running = threading.Barrier(2, timeout=5)

    def create(name):
        def work(_):
            both_running.wait()  # the two run at the same time, on two pool threads
            store.create_endpoint(name)
            store.audit("note", name, endpoint=name)

        return work

    ana = runner.submit("endpoint shop", "Create shop", create("shop"), actor="ana@example.com")
    bob = runner.submit("endpoint bank", "Create bank", create("bank"), actor="bob@example.com")
    for started in (ana, bob):
        assert runner.wait(started.id, 5).state is OperationState.SUCCEEDED
    signed = {(e.target, e.action): e.actor for e in store.history()}
    assert signed == {
        ("shop", "create"): "ana@example.com",
        ("shop", "note"): "ana@example.com",
        ("bank", "create"): "bob@example.com",
        ("bank", "note"): "bob@example.com",
    }
    # Outside an operation (the CLI), the store's own actor signs, and acting_as is undone.
    with acting_as("carol@example.com"):
        store.audit("note", "inside")
    store.audit("note", "outside")
    assert [(e.target, e.actor) for e in store.history(limit=2)] == [
        ("outside", "os-user"),
        ("inside", "carol@example.com"),
    ]


def test_work_without_an_actor_keeps_the_submitters_actor(runner, tmp_path):
    store = DeploymentStore(tmp_path / "deployments.db", actor="os-user")
    with acting_as("dan@example.com"):
        started = runner.submit("endpoint x", "Note", lambda _: store.audit("note", "x"))
    assert runner.wait(started.id, 5).state is OperationState.SUCCEEDED
    assert store.history()[0].actor == "dan@example.com"
