"""The Azure ML workspace form (each value prefilled with where it came from) and the
"Test connection" button. Shows which credential worked or what was tried; never a token."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from components import services
from deploystudio.deployment.azure.workspace import (
    FIELDS,
    AzureWorkspace,
    ConnectionReport,
    resolve_workspace,
    test_connection,
)
from deploystudio.errors import DeployStudioError

FORM_KEY = "azure_workspace_form"
REPORT_KEY = "azure_connection_report"
LABELS = {
    "subscription_id": "Subscription ID",
    "resource_group": "Resource group",
    "workspace_name": "Workspace name",
}


def config_roots() -> list[Path]:
    """Folders a config.json is read from: the project folder and the studio's data folder."""
    return [Path.cwd(), services.get_settings().home]


def found_values() -> dict[str, tuple[str, str]]:
    """field -> (value, source) from secrets.toml, environment or config.json, for each field
    some source has. resolve_workspace only answers for a complete workspace, so each field is
    asked alone, the other two given a placeholder that ranks first (the form)."""
    found = {}
    for name in FIELDS:
        others = {other: "placeholder" for other in FIELDS if other != name}
        try:
            workspace = resolve_workspace(others, config_roots=config_roots())
        except DeployStudioError:
            continue
        found[name] = (getattr(workspace, name), workspace.sources[name])
    return found


def settings_workspace() -> AzureWorkspace | None:
    """The workspace the Azure settings name (this session's form, then secrets.toml, the
    environment, a config.json), or None when they name none yet. Shows nothing."""
    try:
        return resolve_workspace(st.session_state.get(FORM_KEY, {}), config_roots=config_roots())
    except DeployStudioError:
        return None


def render_workspace_settings() -> AzureWorkspace | None:
    """The form; returns the workspace to use, or None (with the reason shown)."""
    typed: dict[str, str] = st.session_state.get(FORM_KEY, {})
    found = found_values()
    with st.form("azure_workspace"):
        values = {}
        for name in FIELDS:
            value, source = found.get(name, ("", None))
            values[name] = st.text_input(
                LABELS[name],
                value=typed.get(name) or value,
                key=f"azure_{name}",
                help="Leave empty to use secrets.toml, the environment or config.json.",
            )
            entered = values[name].strip()
            # Inside a form a widget's value changes only on submit, so this is what counts.
            if entered and entered != value:
                st.caption("From the settings form.")
            elif source:
                st.caption(f"From {source}.")
            else:
                st.caption("Not set anywhere yet.")
        if st.form_submit_button(
            "Use these values", icon=":material/save:", key="azure_workspace_submit"
        ):
            # Only values that differ from what a source already gives count as typed.
            typed = {
                name: value.strip()
                for name, value in values.items()
                if value.strip() and value.strip() != found.get(name, ("", None))[0]
            }
            st.session_state[FORM_KEY] = typed
            st.session_state.pop(REPORT_KEY, None)
    try:
        workspace = resolve_workspace(typed, config_roots=config_roots())
    except DeployStudioError as exc:
        st.warning(str(exc))
        return None
    st.caption("Workspace: " + workspace.describe())
    return workspace


def render_connection_test(workspace: AzureWorkspace) -> ConnectionReport | None:
    """A button that gets a token and reads the workspace; shows the last report."""
    if st.button("Test connection", icon=":material/cable:", key="azure_test_connection"):
        with st.spinner("Signing in and reading the workspace..."):
            st.session_state[REPORT_KEY] = test_connection(workspace)
    report: ConnectionReport | None = st.session_state.get(REPORT_KEY)
    if report is None or report.workspace != workspace:
        return None
    if report.ok:
        st.success(report.message, icon=":material/check_circle:")
        if report.mlflow_tracking_uri:
            st.caption(f"The workspace's MLflow tracking URI: `{report.mlflow_tracking_uri}`")
    else:
        st.error(report.message, icon=":material/error:")
        if report.tried:
            st.dataframe(
                [{"Credential": a.name, "Why it gave no token": a.reason} for a in report.tried],
                hide_index=True,
                width="stretch",
            )
    return report


def pick_here_or_workspace(
    label: str, here: str, address_key: str, widget_key: str
) -> AzureWorkspace | None:
    """A radio between `here` (the local target, the MLflow registry) and the Azure ML
    workspace the settings name (offered only when they name one); returns the workspace when
    it is chosen. ?ADDRESS_KEY=azure presets it on arrival (a link, a reload); the widget keeps
    the choice after. Not bound to the address: a bound radio keeps its label there, not the
    option."""
    workspace = settings_workspace()
    options = ["here"] if workspace is None else ["here", "azure"]
    asked = st.query_params.get(address_key, "here")
    labels = {"here": here, "azure": f"Azure ML: {workspace.workspace_name}" if workspace else ""}
    choice = st.radio(
        label,
        options,
        format_func=labels.__getitem__,
        index=options.index(asked) if asked in options else 0,
        horizontal=True,
        key=widget_key,
    )
    if choice == "azure":
        st.query_params[address_key] = "azure"
        return workspace
    st.query_params.pop(address_key, None)
    return None
