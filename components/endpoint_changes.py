"""Every change to one endpoint (traffic, keys, restarts, deletions) as an operation.

One slot and one subject per endpoint: the runner refuses a second change to the same endpoint
while one runs (another user, a double click), and the page follows the running one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from components import services
from components.operation_status import follow_operation, start_operation
from deploystudio.access import Action
from deploystudio.deployment.operations import Operation, Progress


def subject(endpoint: str) -> str:
    return f"endpoint {endpoint}"


def slot(endpoint: str) -> str:
    """The session-state key that holds the id of this session's latest change."""
    return f"endpoint_operation_{endpoint}"


def submit(
    endpoint: str,
    title: str,
    work: Callable[[Progress], Any],
    action: Action = Action.CHANGE_ENDPOINT,
) -> None:
    """Start `work` and rerun so the page follows it; when the endpoint is busy, say why.
    `action` is what the user's role must allow (adding a deployment is a deploy)."""
    started = start_operation(slot(endpoint), subject(endpoint), title, work, action=action)
    if started is not None:
        st.rerun()


def running(endpoint: str) -> list[Operation]:
    """Changes to the endpoint still running (started by anyone on this server)."""
    return services.local_endpoints().operations.running(subject(endpoint))


def follow(endpoint: str) -> Operation | None:
    """Show this session's latest change (live while it runs), or someone else's running one."""
    mine = follow_operation(slot(endpoint))
    others = [op for op in running(endpoint) if mine is None or op.id != mine.id]
    for operation in others:
        st.info(
            f"{operation.actor or 'Someone'} is changing this endpoint: {operation.title} "
            f"(started {operation.seconds:.0f} s ago). Changes wait until it is done.",
            icon=":material/hourglass_top:",
        )
    return mine
