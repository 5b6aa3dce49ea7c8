"""An endpoint's deployments: the table, and per deployment its log tail, restart and delete."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from components import access, endpoint_changes, services
from components.endpoint_tables import deployments_frame
from deploystudio.access import Action
from deploystudio.deployment.base import (
    Capability,
    Deployment,
    DeploymentState,
    DeploymentTarget,
    Endpoint,
    Progress,
)
from deploystudio.errors import DeployStudioError, ScoringServerError

LOG_LINES = 80
RESTARTABLE = (DeploymentState.READY, DeploymentState.FAILED, DeploymentState.STOPPED)
STATE_ICONS = {
    DeploymentState.READY: ":material/check_circle:",
    DeploymentState.FAILED: ":material/error:",
    DeploymentState.STOPPED: ":material/stop_circle:",
}


def render_deployments(endpoint: Endpoint, deployments: Sequence[Deployment]) -> None:
    if not deployments:
        st.info(
            "No deployments yet. Add one below, or with "
            f"`deploystudio deploy {endpoint.name} --deployment NAME --model URI`."
        )
        return
    st.dataframe(
        deployments_frame(endpoint, deployments), hide_index=True, key="endpoint_deployments"
    )
    target = services.endpoint_target()
    for deployment in deployments:
        icon = STATE_ICONS.get(deployment.state, ":material/pending:")
        label = f"{deployment.name} · {deployment.state.value} · {deployment.model_uri}"
        with st.expander(label, icon=icon):
            _render_deployment(target, endpoint, deployment)


def _server_log(target: DeploymentTarget, deployment: Deployment) -> str | None:
    """The server log's last lines as the target has them, else those its record kept."""
    if target.supports(Capability.LOGS):
        try:
            tail = target.get_logs(deployment.name, deployment.endpoint_name, LOG_LINES)
        except DeployStudioError as exc:
            st.caption(f"The server log cannot be read: {exc}")
            tail = None
        if tail:
            return tail
    return deployment.log_tail


def _render_deployment(
    target: DeploymentTarget, endpoint: Endpoint, deployment: Deployment
) -> None:
    if deployment.reason and deployment.state is DeploymentState.FAILED:
        st.error(deployment.reason)
    elif deployment.reason:
        st.caption(deployment.reason)
    restarts = target.restarts(deployment.name, deployment.endpoint_name)
    if restarts:
        st.caption(
            f"Restarted {restarts} time(s) by its endpoint after failed health checks "
            "(a crash loop leaves it failed)."
        )
    tail = _server_log(target, deployment)
    if tail:
        st.code(tail, language="text", height=240)
    else:
        st.caption("No server log.")
    key = f"deployment_{endpoint.name}_{deployment.name}"
    restart, delete = st.columns(2)
    if target.supports(Capability.RESTART) and restart.button(
        "Restart",
        icon=":material/restart_alt:",
        key=f"{key}_restart",
        **access.button_args(
            Action.CHANGE_ENDPOINT,
            disabled=deployment.state not in RESTARTABLE,
            help="A ready deployment is restarted without a gap: a new server starts beside it.",
        ),
    ):
        endpoint_changes.submit(
            endpoint.name,
            f"Restart {deployment.name}",
            lambda progress: _restart(target, deployment, progress),
        )
    if delete.button(
        "Delete deployment",
        icon=":material/delete:",
        key=f"{key}_delete",
        **access.button_args(Action.CHANGE_ENDPOINT),
    ):
        endpoint_changes.submit(
            endpoint.name,
            f"Delete {deployment.name}",
            lambda progress: _delete(target, deployment, progress),
        )


def _restart(target: DeploymentTarget, deployment: Deployment, progress: Progress) -> Deployment:
    name, endpoint = deployment.name, deployment.endpoint_name
    current = target.get_deployment(name, endpoint)
    if current.state is DeploymentState.READY:
        return target.update_deployment(name, endpoint, progress=progress)
    record = target.restart_deployment(name, endpoint, progress=progress)
    if record.state is DeploymentState.FAILED:
        # The operation fails with the reason, instead of "succeeded" over a failed record.
        raise ScoringServerError(f"{name} did not start again: {record.reason}")
    return record


def _delete(target: DeploymentTarget, deployment: Deployment, progress: Progress) -> None:
    target.delete_deployment(deployment.name, deployment.endpoint_name, progress=progress)
    progress(f"Deleted {deployment.endpoint_name}/{deployment.name}")
