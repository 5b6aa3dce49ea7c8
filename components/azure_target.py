"""One AzureTarget per workspace for the whole server, and the operation runner it uses.

The runner is the local endpoints' one (components/services.py), so a page shows Azure and local
work the same way. When a target is first built in a server process, the operations a previous
run left pending are resumed in the background (polled, never sent again).

Test seam: `connection_for_tests`, None in the app, may be set by a test to a function that
returns the (credential, transport) pair for a workspace; the page's targets then use them
instead of DefaultAzureCredential and the network (tests/test_azure_page.py points them at the
fake ARM transport). A module attribute, because AppTest runs the page in the test's process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from components import services
from deploystudio.deployment.azure.online import AzureTarget
from deploystudio.deployment.azure.records import ONLINE
from deploystudio.deployment.azure.workspace import AzureWorkspace

RESUME_TITLE = "Resume Azure operations left running by the last app run"
connection_for_tests: Callable[[AzureWorkspace], tuple[Any, Any]] | None = None


def subject(endpoint: str, kind: str = ONLINE) -> str:
    """The runner's subject for an Azure endpoint: one operation on it at a time. `kind` is
    azure_records.ONLINE or BATCH: an online and a batch endpoint may share a name, and work on
    one must not hold up (or be mistaken for) work on the other."""
    return f"Azure {kind} endpoint {endpoint}"


@st.cache_resource(show_spinner=False)
def _azure_target(
    home: str, subscription_id: str, resource_group: str, workspace_name: str, seam: int
) -> AzureTarget:
    workspace = AzureWorkspace(subscription_id, resource_group, workspace_name)
    credential = transport = None
    if connection_for_tests is not None:
        credential, transport = connection_for_tests(workspace)
    target = AzureTarget(
        services.get_settings(),
        workspace,
        credential,
        transport,
        registry=services.registry(),
    )
    if target.records.pending() or target.batch_records.pending():
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
        # Part of the cache key so a target built for a test is never reused without it.
        id(connection_for_tests) if connection_for_tests is not None else 0,
    )
