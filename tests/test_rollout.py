"""Safe-rollout steps worked out from an endpoint's traffic and mirror (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deploystudio.deployment.base import (
    AuditEntry,
    AuthMode,
    Deployment,
    DeploymentState,
    Endpoint,
    Runtime,
)
from deploystudio.deployment.rollout import (
    TEST_CALL_ACTION,
    Change,
    Step,
    StepStatus,
    checklist,
    current_step,
    is_rolled_back,
    next_change,
    reached_steps,
    rollback,
    steps,
    suggest_pair,
)
from deploystudio.errors import RolloutError

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def endpoint(traffic: dict[str, int], mirror: tuple[str, int] | None = None) -> Endpoint:
    return Endpoint(
        name="iris",
        auth_mode=AuthMode.KEY,
        scoring_uri="http://127.0.0.1:1/score",
        front_pid=None,
        front_port=None,
        state=DeploymentState.READY,
        reason=None,
        traffic=traffic,
        mirror=mirror,
        created_at=T0,
        updated_at=T0,
    )


def deployment(name: str, minutes: int) -> Deployment:
    return Deployment(
        endpoint_name="iris",
        name=name,
        model_uri="models:/iris-classifier/1",
        runtime=Runtime.AZUREML,
        bundle=None,
        state=DeploymentState.READY,
        reason=None,
        log_tail=None,
        pid=None,
        port=None,
        log_path=None,
        created_at=T0 + timedelta(minutes=minutes),
        updated_at=T0,
    )


@pytest.mark.parametrize(
    ("traffic", "mirror", "step"),
    [
        ({"blue": 100, "green": 0}, None, Step.TEST),
        ({"blue": 100, "green": 0}, ("green", 10), Step.MIRROR),
        ({"blue": 90, "green": 10}, None, Step.CANARY),
        ({"blue": 70, "green": 30}, None, Step.CANARY),  # set by hand: still before half
        ({"blue": 50, "green": 50}, None, Step.HALF),
        ({"blue": 20, "green": 80}, None, Step.HALF),
        ({"blue": 0, "green": 100}, None, Step.FULL),
        ({"green": 100}, None, Step.DONE),
        # A third deployment without traffic does not disturb the rollout.
        ({"blue": 90, "green": 10, "red": 0}, None, Step.CANARY),
    ],
)
def test_every_step_is_read_from_traffic_and_mirror(traffic, mirror, step):
    assert current_step(endpoint(traffic, mirror), "blue", "green") is step


def test_the_whole_sequence_reaches_done_one_change_at_a_time():
    state = endpoint({"blue": 100, "green": 0, "red": 0})
    seen = [current_step(state, "blue", "green")]
    changes: list[Change] = []
    while (change := next_change(state, "blue", "green", mirror_percent=20)) is not None:
        changes.append(change)
        if change.delete:
            traffic = {n: w for n, w in state.traffic.items() if n != change.delete}
            state = endpoint(traffic, state.mirror)
        else:
            state = endpoint(change.traffic, change.mirror)
        seen.append(current_step(state, "blue", "green"))
    assert seen == list(Step)
    assert [(c.traffic, c.mirror, c.delete) for c in changes] == [
        ({"blue": 100, "green": 0, "red": 0}, ("green", 20), None),
        ({"blue": 90, "green": 10, "red": 0}, None, None),
        ({"blue": 50, "green": 50, "red": 0}, None, None),
        ({"blue": 0, "green": 100, "red": 0}, None, None),
        (None, None, "blue"),
    ]
    assert [s for s, _ in steps()] == list(Step)
    assert [t for _, t in steps("blue", "green")] == [
        "Test green directly",
        "Mirror live traffic to green",
        "Send green 10% of live traffic",
        "Send green 50%",
        "Send green 100%",
        "Delete blue",
    ]


def test_a_traffic_change_is_one_update_endpoint_config():
    change = next_change(endpoint({"blue": 100, "green": 0}), "blue", "green")
    assert change.endpoint_config() == {
        "traffic": {"blue": 100, "green": 0},
        "mirror": ["green", 10],
    }
    delete = next_change(endpoint({"blue": 0, "green": 100}), "blue", "green")
    assert delete.delete == "blue"
    with pytest.raises(RolloutError, match="changes no traffic"):
        delete.endpoint_config()


def test_mirror_share_outside_the_guided_range_is_refused():
    with pytest.raises(RolloutError, match="10-20%"):
        next_change(endpoint({"blue": 100, "green": 0}), "blue", "green", mirror_percent=40)


@pytest.mark.parametrize(
    ("traffic", "mirror"),
    [
        ({"blue": 100, "green": 0}, ("green", 10)),
        ({"blue": 50, "green": 50}, None),
        ({"blue": 0, "green": 100}, None),
        ({"blue": 60, "green": 30, "red": 10}, None),  # invalid for a rollout, still rolls back
    ],
)
def test_rollback_puts_all_traffic_on_the_old_deployment_without_mirror(traffic, mirror):
    change = rollback(endpoint(traffic, mirror), "blue")
    assert change.traffic == {name: (100 if name == "blue" else 0) for name in traffic}
    assert change.mirror is None and change.delete is None
    rolled = endpoint(change.traffic, change.mirror)
    assert is_rolled_back(rolled, "blue")
    assert current_step(rolled, "blue", "green") is Step.TEST


def test_rollback_after_the_old_deployment_is_gone_is_refused():
    with pytest.raises(RolloutError, match="nothing to roll back to"):
        rollback(endpoint({"green": 100}), "blue")


def test_done_has_no_next_change():
    assert next_change(endpoint({"green": 100}), "blue", "green") is None


@pytest.mark.parametrize(
    ("traffic", "mirror", "message"),
    [
        ({}, None, "has no deployments"),
        ({"blue": 60, "green": 30, "red": 10}, None, "red 10%"),
        ({"blue": 100, "green": 0, "red": 0}, ("red", 10), "mirrors traffic to 'red'"),
        ({"blue": 0, "green": 0}, None, "sends no live traffic"),
        ({"blue": 100}, None, "no deployment 'green'"),
        ({"green": 50, "red": 50}, None, "not 100%"),
    ],
)
def test_states_that_are_no_rollout_say_why(traffic, mirror, message):
    with pytest.raises(RolloutError, match=message):
        current_step(endpoint(traffic, mirror), "blue", "green")


def test_the_same_deployment_twice_is_refused():
    with pytest.raises(RolloutError, match="two different"):
        current_step(endpoint({"blue": 100}), "blue", "blue")


def test_suggested_pair_follows_the_rollout():
    deployments = [deployment("blue", 0), deployment("green", 5), deployment("red", 9)]
    # Start: old has the traffic, new is the newest at 0%.
    assert suggest_pair(endpoint({"blue": 100, "green": 0}), deployments[:2]) == ("blue", "green")
    assert suggest_pair(endpoint({"blue": 100, "green": 0, "red": 0}), deployments) == (
        "blue",
        "red",
    )
    # The mirror target is the new one.
    assert (
        suggest_pair(endpoint({"blue": 100, "green": 0, "red": 0}, ("green", 10)), deployments)[1]
        == "green"
    )
    # Whatever the shares, the older deployment with live traffic is the old one.
    for shares in ((90, 10), (50, 50), (20, 80)):
        traffic = dict(zip(("blue", "green"), shares, strict=True))
        assert suggest_pair(endpoint(traffic), deployments[:2]) == ("blue", "green")
    assert suggest_pair(endpoint({}), []) == (None, None)
    assert suggest_pair(endpoint({"blue": 0}), deployments[:1]) == (None, "blue")


def traffic_entry(number: int, new: dict[str, int], minutes: int = 10) -> AuditEntry:
    return AuditEntry(
        number, T0 + timedelta(minutes=minutes), "ana", "set_traffic", "iris", "traffic", None, new
    )


def mirror_entry(number: int, new: list | None, minutes: int = 10) -> AuditEntry:
    return AuditEntry(
        number, T0 + timedelta(minutes=minutes), "ana", "set_traffic", "iris", "mirror", None, new
    )


def statuses(items) -> dict[Step, StepStatus]:
    return {item.step: item.status for item in items}


def test_traffic_set_by_hand_ticks_no_mirror_and_says_the_real_share():
    # blue 100% -> blue 80% / green 20% in one change: no mirror, no 10% step, no test call.
    history = [traffic_entry(1, {"blue": 80, "green": 20})]
    items = checklist(
        endpoint({"blue": 80, "green": 20}),
        "blue",
        "green",
        reached_steps(history, "iris", "green", T0),
    )
    assert statuses(items) == {
        Step.TEST: StepStatus.SKIPPED,
        Step.MIRROR: StepStatus.SKIPPED,
        Step.CANARY: StepStatus.NOW,
        Step.HALF: StepStatus.TODO,
        Step.FULL: StepStatus.TODO,
        Step.DONE: StepStatus.TODO,
    }
    now = next(item for item in items if item.status is StepStatus.NOW)
    assert now.text == "Send green 20% of live traffic"
    mirror = next(item for item in items if item.step is Step.MIRROR)
    assert mirror.note == "no mirror was set"


def test_the_guided_sequence_ticks_each_step_with_the_shares_seen():
    history = [
        AuditEntry(
            1,
            T0 + timedelta(minutes=5),
            "ana",
            TEST_CALL_ACTION,
            "iris/green",
            None,
            None,
            {"answered_by": "green"},
        ),
        mirror_entry(2, ["green", 15]),
        traffic_entry(3, {"blue": 90, "green": 10}),
        mirror_entry(4, None),
        traffic_entry(5, {"blue": 50, "green": 50}),
    ]
    items = checklist(
        endpoint({"blue": 50, "green": 50}),
        "blue",
        "green",
        reached_steps(history, "iris", "green", T0),
    )
    assert [item.status for item in items[:4]] == [StepStatus.DONE] * 3 + [StepStatus.NOW]
    assert items[1].text == "Mirror 15% of live traffic to green"
    assert items[2].text == "Send green 10% of live traffic"
    assert items[3].text == "Send green 50%"


def test_history_from_before_the_new_deployment_was_created_does_not_count():
    # An earlier "green" was mirrored to, then deleted; this one was created at minute 30.
    history = [
        mirror_entry(1, ["green", 10], minutes=5),
        traffic_entry(2, {"blue": 90, "green": 10}),
    ]
    reached = reached_steps(history, "iris", "green", T0 + timedelta(minutes=30))
    assert reached == {}
    items = checklist(endpoint({"blue": 100, "green": 0}, ("green", 20)), "blue", "green", reached)
    assert items[1].status is StepStatus.NOW
    assert items[1].text == "Mirror 20% of live traffic to green"
    assert items[0].status is StepStatus.SKIPPED
