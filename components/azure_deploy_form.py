"""The "Deploy to Azure" form: runs AzureTarget.deploy_model as a followed operation."""

from __future__ import annotations

import streamlit as st

from components import access
from components.azure_fields import MODEL_IN_WORKSPACE, render_deployment_fields
from components.azure_target import azure_target, subject
from components.deploy_form import ModelChoice
from components.operation_status import current_operation, follow_operation, start_operation
from deploystudio.access import Action
from deploystudio.deployment.azure.model_reference import workspace_reference
from deploystudio.deployment.azure.workspace import AzureWorkspace
from deploystudio.errors import DeployStudioError

OPERATION_SLOT = "azure_deploy_operation"


def render_deploy_form(choice: ModelChoice, workspace: AzureWorkspace) -> None:
    last = current_operation(OPERATION_SLOT)
    busy = last is not None and not last.done
    with st.form("azure_deploy"):
        fields = render_deployment_fields("azure_deploy", choice)
        all_traffic = st.checkbox(
            "Send it all live traffic once it is ready", value=False, key="azure_all_traffic"
        )
        clicked = st.form_submit_button(
            "Deploy to Azure",
            type="primary",
            icon=":material/cloud_upload:",
            key="azure_deploy_submit",
            **access.button_args(Action.AZURE, disabled=busy),
        )
    if clicked and not busy:
        try:
            model_uri = (
                workspace_reference(choice.name, fields.workspace_version)
                if fields.model_in_azure == MODEL_IN_WORKSPACE
                else choice.uri
            )
        except DeployStudioError as exc:
            st.error(str(exc))
            follow_operation(OPERATION_SLOT)
            return
        target = azure_target(workspace)
        config = {"instance_type": fields.instance_type, "instance_count": fields.instance_count}
        if fields.bundle:
            config["bundle"] = fields.bundle
        start_operation(
            OPERATION_SLOT,
            subject(fields.endpoint),
            f"Deploy {choice.name} version {choice.version.version} to Azure "
            f"{fields.endpoint}/{fields.deployment}",
            lambda progress: target.deploy_model(
                fields.endpoint,
                fields.deployment,
                model_uri,
                config,
                auth_mode=fields.auth_mode,
                all_traffic=all_traffic,
                progress=progress,
            ),
            action=Action.AZURE,
        )
    follow_operation(OPERATION_SLOT)
