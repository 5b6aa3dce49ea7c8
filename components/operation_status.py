"""Long endpoint work on a page: submit it to the runner, then follow it until it ends.

The page keeps only the operation's id in `st.session_state`; the outcome (a record) lives in
the deployment store. While the work runs a fragment polls it once a second, so the rest of
the page stays usable; when it ends the whole page reruns to show the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from components import access, services
from deploystudio.access import Action
from deploystudio.deployment.operations import Operation, OperationState, Progress
from deploystudio.errors import OperationInProgressError

POLL_SECONDS = 1.0


def start_operation(
    slot: str,
    subject: str,
    title: str,
    work: Callable[[Progress], Any],
    action: Action = Action.DEPLOY,
) -> Operation | None:
    """Submit `work`; remember it under `slot`. Shows why when the subject is busy, or when this
    user's role does not allow `action`."""
    if not access.permitted(action):
        return None
    runner = services.local_endpoints().operations
    try:
        operation = runner.submit(subject, title, work, actor=services.current_actor())
    except OperationInProgressError as exc:
        st.error(str(exc), icon=":material/hourglass_top:")
        return None
    st.session_state[slot] = operation.id
    return operation


def current_operation(slot: str) -> Operation | None:
    operation_id = st.session_state.get(slot)
    return services.local_endpoints().operations.get(operation_id) if operation_id else None


def follow_operation(slot: str) -> Operation | None:
    """Show the operation under `slot`: live while it runs, then its outcome. Returns it."""
    operation = current_operation(slot)
    if operation is None:
        return None
    if operation.done:
        render_operation(operation)
    else:
        _poll(slot)
    return operation


def forget_operation(slot: str) -> None:
    st.session_state.pop(slot, None)


def render_operation(operation: Operation) -> None:
    state = {
        OperationState.RUNNING: "running",
        OperationState.SUCCEEDED: "complete",
        OperationState.FAILED: "error",
    }[operation.state]
    label = f"{operation.title}: {operation.state.value} ({operation.seconds:.1f} s)"
    with st.status(label, state=state, expanded=operation.state is not OperationState.SUCCEEDED):
        for message in operation.messages:
            st.write(message)
        if operation.error:
            st.error(operation.error)


@st.fragment(run_every=POLL_SECONDS)
def _poll(slot: str) -> None:
    operation = current_operation(slot)
    if operation is None:
        return
    render_operation(operation)
    if operation.done:
        st.rerun()
