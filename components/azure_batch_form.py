"""The "Batch endpoint" tab: batch settings (Azure's names), YAML export, and deployment to an
Azure ML batch endpoint as a followed operation."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from components import access
from components.azure_target import azure_target, subject
from components.batch_form import render_settings
from components.deploy_form import ModelChoice
from components.operation_status import current_operation, follow_operation, start_operation
from deploystudio.access import Action
from deploystudio.deployment.azure.batch import BatchDeploymentInfo
from deploystudio.deployment.azure.records import BATCH
from deploystudio.deployment.azure.workspace import AzureWorkspace
from deploystudio.deployment.batch.azure_yaml import (
    batch_deployment,
    batch_deployment_yaml,
    batch_endpoint_yaml,
)
from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.errors import DeployStudioError

OPERATION_SLOT = "azure_batch_operation"


def render_batch_form(choice: ModelChoice | None, workspace: AzureWorkspace | None) -> None:
    if choice is None:
        st.info("Choose a model version above.")
        return
    left, middle, right = st.columns(3)
    endpoint = left.text_input(
        "Batch endpoint", f"{choice.name}-batch", key="azure_batch_endpoint"
    ).strip()
    deployment = middle.text_input("Deployment", "blue", key="azure_batch_deployment").strip()
    compute = right.text_input(
        "Compute cluster", "batch-cluster", key="azure_batch_compute",
        help="Name of an Azure ML compute cluster of the workspace.",
    ).strip()  # fmt: skip
    instance_count = left.number_input("Instances", 1, 100, 1, key="azure_batch_instances")
    settings = render_settings()
    if settings is None:
        return
    if st.button("Export YAML", key="azure_batch_export"):
        _render_yaml(choice, settings, endpoint, deployment, compute, int(instance_count))
    if workspace is None:
        st.info("Set the workspace above to deploy; exporting needs no workspace.")
        return
    last = current_operation(OPERATION_SLOT)
    busy = last is not None and not last.done
    if (
        st.button(
            "Deploy batch endpoint",
            type="primary",
            key="azure_batch_submit",
            **access.button_args(Action.AZURE, disabled=busy),
        )
        and not busy
    ):
        batch = azure_target(workspace).batch
        model = f"azureml:{choice.name}:{choice.version.version}"

        def deploy(progress: Callable[[str], None]) -> BatchDeploymentInfo:
            batch.create_endpoint(endpoint, progress=progress)
            return batch.create_deployment(
                deployment, endpoint, model, settings, compute,
                instance_count=int(instance_count), make_default=True, progress=progress,
            )  # fmt: skip

        start_operation(
            OPERATION_SLOT,
            subject(endpoint, BATCH),
            f"Deploy {choice.name} version {choice.version.version} to Azure batch endpoint "
            f"{endpoint}/{deployment}",
            deploy,
            action=Action.AZURE,
        )
    follow_operation(OPERATION_SLOT)


def _render_yaml(
    choice: ModelChoice,
    settings: BatchSettings,
    endpoint: str,
    deployment: str,
    compute: str,
    instance_count: int,
) -> None:
    try:
        entity = batch_deployment(
            settings, choice.uri, endpoint, deployment,
            compute=f"azureml:{compute.removeprefix('azureml:')}", instance_count=instance_count,
        )  # fmt: skip
        endpoint_text = batch_endpoint_yaml(endpoint)
        deployment_text = batch_deployment_yaml(entity)
    except DeployStudioError as exc:
        st.error(str(exc))
        return
    st.code(endpoint_text, language="yaml")
    st.download_button(
        "Download endpoint.yml", endpoint_text, "endpoint.yml", key="azure_batch_endpoint_yml"
    )
    st.code(deployment_text, language="yaml")
    st.download_button(
        "Download deployment.yml", deployment_text, "deployment.yml",
        key="azure_batch_deployment_yml",
    )  # fmt: skip
