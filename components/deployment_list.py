"""An endpoint's deployments: the table, and per deployment its log tail, restart and delete."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from components import access, endpoint_changes, services
from components.endpoint_tables import deployments_frame
from deploystudio.access import Action
from deploystudio.deployment.base import Deployment, DeploymentState, Endpoint
from deploystudio.deployment.local.healing import restart_count
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.operations import Progress
from deploystudio.errors import ScoringServerError

LOG_LINES = 80
RESTARTABLE = (DeploymentState.READY, DeploymentState.FAILED, DeploymentState.STOPPED)
STATE_ICONS = {
    DeploymentState.READY: ":material/check_circle:",
    DeploymentState.FAILED: ":material/error:",
    DeploymentState.STOPPED: ":material/stop_circle:",
}


def log_tail(deployment: Deployment, data_folder: Path, lines: int = LOG_LINES) -> str | None:
    """The last lines of the log the record names, or None. Only a file inside the studio's
    data folder is read: the record is data, and the page must not become a file viewer."""
    if not deployment.log_path:
        return None
    path = Path(deployment.log_path).resolve()
    if not path.is_relative_to(data_folder.resolve()) or not path.is_file():
        return None
    with path.open("rb") as file:
        # The tail of a long log without reading all of it.
        file.seek(max(0, path.stat().st_size - 200 * lines))
        text = file.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def render_deployments(endpoint: Endpoint, deployments: Sequence[Deployment]) -> None:
    if not deployments:
        st.info(
            "No deployments yet. Deploy a model to this endpoint from the Deploy page or with "
            f"`deploystudio deploy {endpoint.name} --deployment NAME --model URI`."
        )
        return
    st.dataframe(
        deployments_frame(endpoint, deployments), hide_index=True, key="endpoint_deployments"
    )
    data_folder = services.get_settings().home
    for deployment in deployments:
        icon = STATE_ICONS.get(deployment.state, ":material/pending:")
        label = f"{deployment.name} · {deployment.state.value} · {deployment.model_uri}"
        with st.expander(label, icon=icon):
            _render_deployment(endpoint, deployment, data_folder)


def _render_deployment(endpoint: Endpoint, deployment: Deployment, data_folder: Path) -> None:
    if deployment.reason and deployment.state is DeploymentState.FAILED:
        st.error(deployment.reason)
    elif deployment.reason:
        st.caption(deployment.reason)
    restarts = restart_count(deployment.log_path)
    if restarts:
        st.caption(
            f"Restarted {restarts} time(s) by its endpoint after failed health checks "
            "(a crash loop leaves it failed)."
        )
    tail = log_tail(deployment, data_folder) or deployment.log_tail
    if tail:
        st.code(tail, language="text", height=240)
    else:
        st.caption("No server log.")
    key = f"deployment_{endpoint.name}_{deployment.name}"
    target = services.local_endpoints().target
    restart, delete = st.columns(2)
    if restart.button(
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


def _restart(target: LocalTarget, deployment: Deployment, progress: Progress) -> Deployment:
    name, endpoint = deployment.name, deployment.endpoint_name
    current = target.get_deployment(name, endpoint)
    if current.state is DeploymentState.READY:
        return target.update_deployment(name, endpoint, progress=progress)
    record = target.restart_deployment(name, endpoint, progress=progress)
    if record.state is DeploymentState.FAILED:
        # The operation fails with the reason, instead of "succeeded" over a failed record.
        raise ScoringServerError(f"{name} did not start again: {record.reason}")
    return record


def _delete(target: LocalTarget, deployment: Deployment, progress: Progress) -> None:
    target.delete_deployment(deployment.name, deployment.endpoint_name)
    progress(f"Deleted {deployment.endpoint_name}/{deployment.name}")
