"""The Endpoints page's target picker: the local endpoints, or the Azure ML workspace the Azure
settings name (the Azure ML page's form, secrets.toml, the environment or a config.json). The
choice is kept in the address (?target=azure) and in `services.ENDPOINT_WORKSPACE_KEY`, which
every endpoint panel's `services.endpoint_target()` reads, so the same panels manage either."""

from __future__ import annotations

import streamlit as st

from components import services
from components.azure_settings import settings_workspace
from deploystudio.deployment.base import DeploymentTarget

LOCAL = "local"
AZURE = "azure"
PICKER_KEY = "target"  # in the address
WIDGET_KEY = "endpoint_target"


def render_target_picker() -> tuple[DeploymentTarget, str]:
    """The picker; returns the chosen target and what its endpoints are called ("local
    endpoints", "online endpoints in Azure ML workspace ws")."""
    workspace = settings_workspace()
    options = [LOCAL] if workspace is None else [LOCAL, AZURE]
    asked = st.query_params.get(PICKER_KEY, LOCAL)
    labels = {
        LOCAL: "Local",
        AZURE: f"Azure ML: {workspace.workspace_name}" if workspace else "Azure ML",
    }
    choice = st.radio(
        "Target",
        options,
        format_func=labels.__getitem__,
        # The address says which on arrival (a link, a reload); the widget keeps the choice
        # after. Not bound to the address: a bound radio keeps its label there, not the option.
        index=options.index(asked) if asked in options else 0,
        horizontal=True,
        key=WIDGET_KEY,
    )
    if choice == options[0]:
        st.query_params.pop(PICKER_KEY, None)
    else:
        st.query_params[PICKER_KEY] = choice
    if workspace is None:
        st.caption(
            "Set an Azure ML workspace on the Azure ML page (or in secrets.toml, the "
            "environment or a config.json) to manage its online endpoints here too."
        )
    if choice == AZURE and workspace is not None:
        st.session_state[services.ENDPOINT_WORKSPACE_KEY] = workspace
        return services.endpoint_target(), (
            f"online endpoints in Azure ML workspace {workspace.workspace_name}"
        )
    st.session_state[services.ENDPOINT_WORKSPACE_KEY] = None
    return services.endpoint_target(), "local endpoints"
