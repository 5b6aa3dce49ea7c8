"""One AzureTarget per workspace for the whole server, and the operation runner it uses.

The runner is the local endpoints' one (components/services.py), so a page shows Azure and local
work the same way. When a target is first built in a server process, the operations a previous
run left pending are resumed in the background (polled, never sent again).
"""

from __future__ import annotations

import streamlit as st

from components import services
from deploystudio.deployment.azure import AzureTarget
from deploystudio.deployment.azure_workspace import AzureWorkspace

RESUME_TITLE = "Resume Azure operations left running by the last app run"


def subject(endpoint: str) -> str:
    """The runner's subject for an Azure endpoint: one operation on it at a time."""
    return f"Azure endpoint {endpoint}"


@st.cache_resource(show_spinner=False)
def _azure_target(
    home: str, subscription_id: str, resource_group: str, workspace_name: str
) -> AzureTarget:
    workspace = AzureWorkspace(subscription_id, resource_group, workspace_name)
    target = AzureTarget(services.get_settings(), workspace, registry=services.registry())
    if target.records.pending():
        services.local_endpoints().operations.submit(
            f"Azure workspace {workspace_name}",
            RESUME_TITLE,
            lambda progress: target.resume_pending(progress),
            actor=services.current_actor(),
        )
    return target


def azure_target(workspace: AzureWorkspace) -> AzureTarget:
    """Builds no network connection by itself: MLClient calls Azure only when used."""
    return _azure_target(
        str(services.get_settings().home),
        workspace.subscription_id,
        workspace.resource_group,
        workspace.workspace_name,
    )
