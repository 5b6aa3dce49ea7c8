"""The Endpoints page's target picker: the local endpoints, or the Azure ML workspace the Azure
settings name (the Azure ML page's form, secrets.toml, the environment or a config.json). The
choice is kept in the address (?target=azure) and in `services.ENDPOINT_WORKSPACE_KEY`, which
every endpoint panel's `services.endpoint_target()` reads, so the same panels manage either."""

from __future__ import annotations

import streamlit as st

from components import services
from components.azure_settings import pick_here_or_workspace, settings_workspace
from deploystudio.deployment.base import DeploymentTarget

AZURE = "azure"
PICKER_KEY = "target"  # in the address
WIDGET_KEY = "endpoint_target"


def render_target_picker() -> tuple[DeploymentTarget, str]:
    """The picker; returns the chosen target and what its endpoints are called ("local
    endpoints", "online endpoints in Azure ML workspace ws")."""
    workspace = pick_here_or_workspace("Target", "Local", PICKER_KEY, WIDGET_KEY)
    if settings_workspace() is None:
        st.caption(
            "Set an Azure ML workspace on the Azure ML page (or in secrets.toml, the "
            "environment or a config.json) to manage its online endpoints here too."
        )
    st.session_state[services.ENDPOINT_WORKSPACE_KEY] = workspace
    if workspace is not None:
        name = workspace.workspace_name
        return services.endpoint_target(), f"online endpoints in Azure ML workspace {name}"
    return services.endpoint_target(), "local endpoints"
