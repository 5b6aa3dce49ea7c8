"""The safe rollout as one guided flow: the steps with the current one highlighted, a test
call to the new deployment, one button for the next step, and Rollback always at hand.

The step comes from the endpoint's traffic and mirror (`deployment.rollout`), so it is right
after a reload, for every user, and after a change made elsewhere; the steps before it are
ticked only when the endpoint's history shows them (a mirror set, a share of traffic seen, a
direct test call made), else marked skipped. The pair of deployments is
kept in the address (?old=&new=) so that the page is linkable.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from components import access, endpoint_changes, services
from deploystudio.access import Action
from deploystudio.deployment import invoke, rollout
from deploystudio.deployment.base import (
    AuthMode,
    Capability,
    Deployment,
    DeploymentTarget,
    Endpoint,
    Progress,
)
from deploystudio.deployment.rollout import Change, ChecklistItem, Step, StepStatus
from deploystudio.errors import DeployStudioError, RolloutError

# Enough of an endpoint's history to cover a rollout (each step writes one or two entries).
HISTORY_ENTRIES = 1000


def render_rollout(endpoint: Endpoint, deployments: Sequence[Deployment]) -> None:
    names = list(endpoint.traffic)
    prefix = f"rollout_{endpoint.name}"
    asked_old, asked_new = st.query_params.get("old"), st.query_params.get("new")
    if len(names) < 2:
        if asked_new in names and asked_old and asked_old not in names:
            st.success(
                f"Rollout complete: **{asked_new}** serves all traffic, {asked_old} is gone."
            )
        else:
            st.info(
                "A rollout needs two deployments: the one serving now (old) and a new one at 0% "
                "(deploy it from the Deploy page)."
            )
        return
    suggested_old, suggested_new = rollout.suggest_pair(endpoint, deployments)
    left, right = st.columns(2)
    start_old = asked_old if asked_old in names else suggested_old or names[0]
    old = left.selectbox(
        "Old deployment (serves now)", names, index=names.index(start_old), key=f"{prefix}_old"
    )
    candidates = [n for n in names if n != old]
    start_new = next((n for n in (asked_new, suggested_new) if n in candidates), candidates[-1])
    new = right.selectbox(
        "New deployment", candidates, index=candidates.index(start_new), key=f"{prefix}_new"
    )
    if (asked_old, asked_new) != (old, new):
        st.query_params["old"], st.query_params["new"] = old, new
    target = services.endpoint_target()
    created = next((d.created_at for d in deployments if d.name == new), None)
    # Without a history every step before the current one reads as skipped.
    history = (
        target.history(endpoint.name, limit=HISTORY_ENTRIES)
        if target.supports(Capability.HISTORY)
        else []
    )
    try:
        step = rollout.current_step(endpoint, old, new)
        items = rollout.checklist(
            endpoint, old, new, rollout.reached_steps(history, endpoint.name, new, created)
        )
    except RolloutError as exc:
        st.warning(str(exc))
        _render_rollback(target, endpoint, old, prefix)
        return
    _render_steps(items)
    if step is Step.TEST:
        _render_test_call(target, endpoint, deployments, new, prefix)
    _render_next(target, endpoint, old, new, step, prefix)
    _render_rollback(target, endpoint, old, prefix)


def _render_steps(items: Sequence[ChecklistItem]) -> None:
    lines = []
    for item in items:
        if item.status is StepStatus.DONE:
            lines.append(f"- :green[:material/check_circle:] {item.text}")
        elif item.status is StepStatus.SKIPPED:
            lines.append(f"- :orange[:material/block: {item.text}] (skipped: {item.note})")
        elif item.status is StepStatus.NOW:
            lines.append(f"- :blue-background[:material/arrow_right: **{item.text}** (now)]")
        else:
            lines.append(f"- :gray[:material/radio_button_unchecked: {item.text}]")
    st.markdown("\n".join(lines))


def _render_test_call(
    target: DeploymentTarget,
    endpoint: Endpoint,
    deployments: Sequence[Deployment],
    new: str,
    prefix: str,
) -> None:
    result_key = f"{prefix}_test_{new}"
    if st.button(f"Test {new} directly", icon=":material/science:", key=f"{prefix}_test"):
        st.session_state.pop(result_key, None)
        try:
            answer = _test_call(target, endpoint, deployments, new)
            st.session_state[result_key] = answer
            # Recorded so the checklist can tick the test step later, for every user.
            if target.supports(Capability.HISTORY):
                target.note(
                    endpoint.name,
                    rollout.TEST_CALL_ACTION,
                    f"{endpoint.name}/{new}",
                    {"answered_by": answer.deployment or new},
                    actor=services.current_actor(),
                )
        except DeployStudioError as exc:
            st.error(str(exc))
    answer: invoke.Answer | None = st.session_state.get(result_key)
    if answer is not None:
        st.success(
            f"{answer.deployment or new} answered in {answer.seconds * 1000:.1f} ms "
            "(its input example, sent with the azureml-model-deployment header)."
        )
        st.json(answer.body, expanded=1)


def _test_call(
    target: DeploymentTarget, endpoint: Endpoint, deployments: Sequence[Deployment], new: str
) -> invoke.Answer:
    record = next(d for d in deployments if d.name == new)
    settings = services.get_settings()
    inspection = services.inspection(settings.registry_uri, record.model_uri)
    if inspection.input_example is None:
        raise RolloutError(
            f"The model of {new} has no input example: test it from Invoke with 'Send to' "
            f"set to {new}."
        )
    body = invoke.request_body(
        inspection.input_example, inspection.input_example_params, record.runtime
    )
    key = None
    if endpoint.auth_mode is AuthMode.KEY:
        key = target.get_keys(endpoint.name).primary
    assert endpoint.scoring_uri is not None
    return invoke.call(endpoint.scoring_uri, body, key, new)


def _render_next(
    target: DeploymentTarget, endpoint: Endpoint, old: str, new: str, step: Step, prefix: str
) -> None:
    mirror = rollout.DEFAULT_MIRROR_PERCENT
    if step is Step.TEST:
        low, high = rollout.MIRROR_PERCENT_RANGE
        mirror = st.slider("Mirror %", low, high, mirror, step=5, key=f"{prefix}_mirror")
    change = rollout.next_change(endpoint, old, new, mirror)
    if change is None:
        st.success(f"Rollout complete: **{new}** serves all traffic and {old} is deleted.")
        return
    if st.button(
        f"Next: {change.title}",
        type="primary",
        icon=":material/skip_next:",
        key=f"{prefix}_next",
        **access.button_args(Action.CHANGE_ENDPOINT),
    ):
        endpoint_changes.submit(
            endpoint.name,
            change.title,
            lambda progress: _apply(target, endpoint.name, change, progress),
        )


def _render_rollback(target: DeploymentTarget, endpoint: Endpoint, old: str, prefix: str) -> None:
    try:
        change = rollout.rollback(endpoint, old)
    except RolloutError as exc:
        st.caption(str(exc))
        return
    done = rollout.is_rolled_back(endpoint, old)
    if st.button(
        f"Rollback to {old}",
        icon=":material/undo:",
        key=f"{prefix}_rollback",
        **access.button_args(
            Action.CHANGE_ENDPOINT,
            disabled=done,
            help=f"{old} already has all traffic." if done else "All live traffic back, no mirror.",
        ),
    ):
        endpoint_changes.submit(
            endpoint.name,
            change.title,
            lambda progress: _apply(target, endpoint.name, change, progress),
        )


def _apply(target: DeploymentTarget, endpoint: str, change: Change, progress: Progress) -> None:
    if change.delete:
        target.delete_deployment(change.delete, endpoint, progress=progress)
        progress(f"Deleted {endpoint}/{change.delete}")
        return
    after = target.update_endpoint(endpoint, change.endpoint_config(), progress=progress)
    progress(f"Traffic of {endpoint}: {after.traffic}, mirror {after.mirror or 'none'}")
