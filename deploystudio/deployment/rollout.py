"""Safe rollout, the sequence Azure ML documents for online endpoints, as pure functions.

From an old deployment that serves all live traffic to a new one deployed at 0%: test the new
one directly (the `azureml-model-deployment` header), mirror a share of live traffic to it,
send it 10% of live traffic, then 50%, then 100%, then delete the old one. Rollback puts all
live traffic back on the old deployment and removes the mirror.

The current step is worked out from the endpoint's traffic and mirror alone, so it is the same
after a reload, for every user and after a change made with the CLI. Nothing here calls a
target: `next_change` and `rollback` describe the change, the caller applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from deploystudio.deployment.base import AuditEntry, Deployment, Endpoint
from deploystudio.errors import RolloutError

DEFAULT_MIRROR_PERCENT = 10
# Azure's safe-rollout guide mirrors 10%; more than 20% of a copy of live load is a load test,
# not a shadow check, so the guided flow keeps to this range.
MIRROR_PERCENT_RANGE = (10, 20)
CANARY_PERCENT = 10
HALF_PERCENT = 50


class Step(IntEnum):
    """The step of the sequence the endpoint's traffic shows as reached, in order."""

    TEST = 0  # old 100%, new 0%, no mirror: call the new deployment directly
    MIRROR = 1  # the new deployment gets a copy of live traffic
    CANARY = 2  # the new deployment gets a small share of live traffic
    HALF = 3  # the new deployment gets half (or more) of live traffic
    FULL = 4  # the new deployment gets all live traffic: delete the old one
    DONE = 5  # the old deployment is gone


STEP_TITLES = {
    Step.TEST: "Test {new} directly",
    Step.MIRROR: "Mirror live traffic to {new}",
    Step.CANARY: f"Send {{new}} {CANARY_PERCENT}% of live traffic",
    Step.HALF: f"Send {{new}} {HALF_PERCENT}%",
    Step.FULL: "Send {new} 100%",
    Step.DONE: "Delete {old}",
}


# The audit entry a direct test call of a rollout's new deployment leaves (it changes no record):
# the checklist ticks "Test NEW directly" only when one was made.
TEST_CALL_ACTION = "test_deployment"
TRAFFIC_ACTION = "set_traffic"


class StepStatus(StrEnum):
    """How a step of the checklist stands, from the endpoint's state and its history."""

    DONE = "done"  # the history shows the endpoint went through it
    SKIPPED = "skipped"  # the traffic went past it without it
    NOW = "now"  # the endpoint's current state
    TODO = "todo"


@dataclass(frozen=True)
class ChecklistItem:
    step: Step
    text: str
    status: StepStatus
    # Why a step shows as skipped (empty otherwise).
    note: str = ""


@dataclass(frozen=True)
class Change:
    """What the next step (or a rollback) does to the endpoint.

    Either new traffic and mirror, applied together in one `update_endpoint` call, or the
    deletion of the old deployment (`delete` names it; traffic and mirror are then unused).
    """

    title: str
    traffic: dict[str, int] | None = None
    mirror: tuple[str, int] | None = None
    delete: str | None = None

    def endpoint_config(self) -> dict[str, object]:
        """The `update_endpoint` config of a traffic change."""
        if self.traffic is None:
            raise RolloutError(f"{self.title!r} changes no traffic.")
        return {"traffic": dict(self.traffic), "mirror": list(self.mirror) if self.mirror else None}


def steps(old: str = "the old deployment", new: str = "the new one") -> list[tuple[Step, str]]:
    """Every step in order with its title."""
    return [(step, STEP_TITLES[step].format(old=old, new=new)) for step in Step]


def reached_steps(
    history: Sequence[AuditEntry], endpoint: str, new: str, since: datetime | None = None
) -> dict[Step, int | None]:
    """The steps the audit `history` of `endpoint` shows `new` went through (from `since`, the
    new deployment's creation, so an older deployment of the same name does not count), with
    the share of traffic last seen at each (None for the test call).

    Read from the entries themselves, not from the current traffic: traffic set by hand from
    0% to 20% goes through no mirror and no 10%, and the checklist must not tick them.
    """
    wanted = new.lower()
    reached: dict[Step, int | None] = {}
    for entry in sorted(history, key=lambda e: e.id):
        if since is not None and entry.at < since:
            continue
        if entry.action == TEST_CALL_ACTION and entry.target.lower() == f"{endpoint}/{new}".lower():
            reached[Step.TEST] = None
        if entry.action != TRAFFIC_ACTION:
            continue
        if entry.field == "mirror" and isinstance(entry.new, list) and len(entry.new) == 2:
            name, percent = entry.new
            if str(name).lower() == wanted and percent:
                reached[Step.MIRROR] = int(percent)
        elif entry.field == "traffic" and isinstance(entry.new, Mapping):
            share = next((w for n, w in entry.new.items() if n.lower() == wanted), 0)
            step = _step_of_share(int(share))
            if step is not None:
                reached[step] = int(share)
    return reached


def checklist(
    endpoint: Endpoint, old: str, new: str, reached: Mapping[Step, int | None]
) -> list[ChecklistItem]:
    """Every step with how it stands: the current one worded with the endpoint's real shares,
    the ones before it done or skipped as `reached` (from `reached_steps`) shows.

    Raises RolloutError as `current_step` does.
    """
    current = current_step(endpoint, old, new)
    items = []
    for step in Step:
        if step == current:
            items.append(ChecklistItem(step, _now_text(endpoint, step, old, new), StepStatus.NOW))
        elif step > current:
            items.append(ChecklistItem(step, _title(step, old, new), StepStatus.TODO))
        elif step in reached:
            text = _seen_text(step, reached[step], old, new)
            items.append(ChecklistItem(step, text, StepStatus.DONE))
        else:
            items.append(
                ChecklistItem(step, _title(step, old, new), StepStatus.SKIPPED, _SKIPPED[step])
            )
    return items


_SKIPPED = {
    Step.TEST: "no direct test call was recorded",
    Step.MIRROR: "no mirror was set",
    Step.CANARY: "the traffic went past it",
    Step.HALF: "the traffic went past it",
    Step.FULL: "the traffic went past it",
    Step.DONE: "",
}


def _title(step: Step, old: str, new: str) -> str:
    return STEP_TITLES[step].format(old=old, new=new)


def _now_text(endpoint: Endpoint, step: Step, old: str, new: str) -> str:
    if step is Step.MIRROR and endpoint.mirror is not None:
        return f"Mirror {endpoint.mirror[1]}% of live traffic to {new}"
    if step in (Step.CANARY, Step.HALF):
        return _seen_text(step, endpoint.traffic[new], old, new)
    return _title(step, old, new)


def _seen_text(step: Step, percent: int | None, old: str, new: str) -> str:
    if percent is None:
        return _title(step, old, new)
    if step is Step.MIRROR:
        return f"Mirror {percent}% of live traffic to {new}"
    if step is Step.CANARY:
        return f"Send {new} {percent}% of live traffic"
    return f"Send {new} {percent}%"


def _step_of_share(share: int) -> Step | None:
    if share <= 0:
        return None
    if share < HALF_PERCENT:
        return Step.CANARY
    if share < 100:
        return Step.HALF
    return Step.FULL


def current_step(endpoint: Endpoint, old: str, new: str) -> Step:
    """The step the rollout from `old` to `new` stands at, from the endpoint's traffic/mirror.

    Raises RolloutError when the endpoint does not fit a rollout between the two: an unknown
    deployment, live traffic or a mirror on a third deployment, or no live traffic at all.
    """
    _check_pair(endpoint, old, new)
    if old not in endpoint.traffic:
        if endpoint.traffic.get(new) != 100:
            raise RolloutError(
                f"Deployment {old!r} is gone but {new!r} gets "
                f"{endpoint.traffic.get(new, 0)}% of live traffic, not 100%: set the traffic "
                "of the endpoint by hand."
            )
        return Step.DONE
    others = {n: w for n, w in endpoint.traffic.items() if w and n not in (old, new)}
    if others:
        listed = ", ".join(f"{n} {w}%" for n, w in sorted(others.items()))
        raise RolloutError(
            f"Live traffic also goes to {listed}: a rollout moves traffic between two "
            f"deployments only. Roll back to {old!r}, or set the traffic by hand."
        )
    if endpoint.mirror is not None and endpoint.mirror[0] != new:
        raise RolloutError(
            f"Endpoint {endpoint.name!r} mirrors traffic to {endpoint.mirror[0]!r}, not to "
            f"{new!r}: remove that mirror (or roll back) before rolling out {new!r}."
        )
    share = endpoint.traffic[new]
    if share == 0 and endpoint.traffic[old] == 0:
        raise RolloutError(
            f"Endpoint {endpoint.name!r} sends no live traffic: give {old!r} 100% (Rollback) to "
            "start a rollout from it."
        )
    if share == 0:
        return Step.MIRROR if endpoint.mirror is not None else Step.TEST
    if share < HALF_PERCENT:
        return Step.CANARY
    if share < 100:
        return Step.HALF
    return Step.FULL


def next_change(
    endpoint: Endpoint, old: str, new: str, mirror_percent: int = DEFAULT_MIRROR_PERCENT
) -> Change | None:
    """The change that takes the rollout one step further; None when it is done."""
    step = current_step(endpoint, old, new)
    if step is Step.TEST:
        low, high = MIRROR_PERCENT_RANGE
        if not low <= mirror_percent <= high:
            raise RolloutError(
                f"Mirror {low}-{high}% of live traffic during a rollout, not {mirror_percent}%."
            )
        return Change(
            f"Mirror {mirror_percent}% of live traffic to {new}",
            _traffic(endpoint, {old: 100}),
            (new, mirror_percent),
        )
    if step is Step.MIRROR:
        return Change(
            f"Send {CANARY_PERCENT}% of live traffic to {new} (mirror off)",
            _traffic(endpoint, {old: 100 - CANARY_PERCENT, new: CANARY_PERCENT}),
        )
    if step is Step.CANARY:
        return Change(
            f"Send {HALF_PERCENT}% of live traffic to {new}",
            _traffic(endpoint, {old: 100 - HALF_PERCENT, new: HALF_PERCENT}),
        )
    if step is Step.HALF:
        return Change(f"Send all live traffic to {new}", _traffic(endpoint, {new: 100}))
    if step is Step.FULL:
        return Change(f"Delete {old}", delete=old)
    return None


def rollback(endpoint: Endpoint, old: str) -> Change:
    """All live traffic back to `old`, no mirror. Raises RolloutError once `old` is deleted."""
    if old not in endpoint.traffic:
        raise RolloutError(
            f"Deployment {old!r} no longer exists on endpoint {endpoint.name!r}: there is "
            "nothing to roll back to. Deploy the old model again to go back."
        )
    return Change(f"Roll back: all live traffic to {old}", _traffic(endpoint, {old: 100}))


def is_rolled_back(endpoint: Endpoint, old: str) -> bool:
    """Whether `old` already has all live traffic and nothing is mirrored."""
    return endpoint.traffic.get(old) == 100 and endpoint.mirror is None


def suggest_pair(
    endpoint: Endpoint, deployments: Sequence[Deployment]
) -> tuple[str | None, str | None]:
    """The (old, new) pair a rollout page should offer first.

    Old: the oldest deployment with live traffic (a rollout's new deployment is created after
    the old one, so this holds at every step). New: the mirror target, else the newest other
    deployment with live traffic, else the newest deployment at 0%. Either is None when the
    endpoint has no such deployment.
    """
    created = {d.name: d.created_at for d in deployments}
    order = sorted(endpoint.traffic, key=lambda n: (created.get(n) is None, created.get(n), n))
    live = [n for n in order if endpoint.traffic[n]]
    old = live[0] if live else None
    if endpoint.mirror is not None and endpoint.mirror[0] != old:
        return old, endpoint.mirror[0]
    others = [n for n in live if n != old]
    if others:
        return old, others[-1]
    idle = [n for n in order if n != old]
    return old, idle[-1] if idle else None


def _check_pair(endpoint: Endpoint, old: str, new: str) -> None:
    if not endpoint.traffic:
        raise RolloutError(
            f"Endpoint {endpoint.name!r} has no deployments: deploy the current model (old) and "
            "the new one first."
        )
    if old == new:
        raise RolloutError(f"Choose two different deployments, not {old!r} twice.")
    if new not in endpoint.traffic:
        raise RolloutError(
            f"Endpoint {endpoint.name!r} has no deployment {new!r}: deploy the new model "
            "at 0% first."
        )


def _traffic(endpoint: Endpoint, weights: dict[str, int]) -> dict[str, int]:
    """Every deployment of the endpoint with its weight: the ones not named get 0."""
    return {name: weights.get(name, 0) for name in endpoint.traffic}
