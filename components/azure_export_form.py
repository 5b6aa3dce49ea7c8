"""The "Export for CI" form: a chosen model version (and optional scoring bundle) written as an
Azure ML folder in the studio's data folder, its `az ml` commands, and a zip download.

The model goes to Azure as its files (Azure numbers the new version), or as a version in the
workspace: registered there by this form through azure-ai-ml (the version Azure answers is the
one referenced), or one the user names. Our version number is never taken for the workspace's."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from components import services
from components.azure_fields import (
    MODEL_IN_WORKSPACE,
    MODEL_REGISTER,
    DeploymentFields,
    render_deployment_fields,
)
from components.azure_target import azure_target
from components.deploy_form import ModelChoice
from deploystudio.deployment.azure.export import (
    README_FILE,
    ExportResult,
    example_request_or_none,
    export_online,
)
from deploystudio.deployment.azure.model_registration import register_model
from deploystudio.deployment.azure.pinning import Pinning, pinned_environment
from deploystudio.deployment.azure.specs import (
    ModelSource,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    deployment_entity,
    endpoint_entity,
    model_source,
    scoring_code,
)
from deploystudio.deployment.azure.workspace import AzureWorkspace
from deploystudio.errors import AzureWorkspaceError, DeployStudioError
from deploystudio.prediction import local_model_path

RESULT_KEY = "azure_export_result"
PINNING_KEY = "azure_export_pinning"
EXPORTS_FOLDER = "exports"


def exports_root() -> Path:
    return services.get_settings().home / EXPORTS_FOLDER


def pinning(choice: ModelChoice) -> Pinning:
    """The environment a local deployment of the chosen model ran in, as the export's pins."""
    deployments = services.endpoint_target().list_deployments()
    return pinned_environment(choice.uri, deployments, services.get_settings().home)


def export_choice(
    choice: ModelChoice, fields: DeploymentFields, workspace: AzureWorkspace | None = None
) -> tuple[ExportResult, str]:
    """The export folder written, and what its conda files are pinned to (in words)."""
    settings = services.get_settings()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = exports_root() / f"{fields.endpoint}-{fields.deployment}-{stamp}"
    # The cached download: request.json's example, and the files to upload or register.
    local = local_model_path(choice.uri, settings, services.registry())
    endpoint = OnlineEndpointSpec(name=fields.endpoint, auth_mode=fields.auth_mode)

    def spec_for(model: ModelSource) -> OnlineDeploymentSpec:
        return OnlineDeploymentSpec(
            name=fields.deployment,
            endpoint_name=fields.endpoint,
            model=model,
            instance_type=fields.instance_type,
            instance_count=fields.instance_count,
            code=scoring_code(fields.bundle, settings) if fields.bundle else None,
        )

    version = fields.workspace_version if fields.model_in_azure == MODEL_IN_WORKSPACE else None
    if fields.model_in_azure == MODEL_REGISTER:
        if workspace is None:
            raise AzureWorkspaceError(
                "Set the workspace above to register the model in it, or export its files."
            )
        # Every setting is checked before anything is registered in the workspace.
        endpoint_entity(endpoint)
        deployment_entity(spec_for(ModelSource(local_path=local, name=choice.name)))
        registered = register_model(azure_target(workspace).client, local, choice.name, choice.uri)
        version = registered.version
    spec = spec_for(
        model_source(choice.uri, settings, registry=services.registry(), workspace_version=version)
    )
    pinned = (
        pinning(choice)
        if spec.model.local_path is not None
        else Pinning(None, "Not pinned: the model is referenced in Azure.")
    )
    result = export_online(
        folder,
        endpoint,
        spec,
        allowed_roots=[exports_root()],
        # The model environment its local deployment ran in: its exact versions go to Azure.
        pinned=pinned.environment,
        request=example_request_or_none(local),
    )
    return result, pinned.note


def zip_bytes(folder: Path) -> bytes:
    """The folder as a zip, in memory (the export stays where it is for the CLI)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


def render_export_form(
    choice: ModelChoice, workspace: AzureWorkspace | None = None
) -> ExportResult | None:
    with st.form("azure_export"):
        fields = render_deployment_fields("azure_export", choice, offer_registration=True)
        submitted = st.form_submit_button(
            "Export", icon=":material/folder_zip:", key="azure_export_submit"
        )
    if submitted:
        try:
            writing = "Writing the export folder and loading its YAML back..."
            if fields.model_in_azure == MODEL_REGISTER:
                writing = "Registering the model in the workspace, then " + writing.lower()
            with st.spinner(writing):
                written, note = export_choice(choice, fields, workspace)
            st.session_state[RESULT_KEY] = written
            st.session_state[PINNING_KEY] = note
        except DeployStudioError as exc:
            st.error(str(exc))
    result: ExportResult | None = st.session_state.get(RESULT_KEY)
    if result is None or not result.folder.is_dir():
        return None
    st.success(f"Exported to `{result.folder}` ({len(result.files)} files).")
    if isinstance(result.deployment.model, str):  # a version in the workspace, not the files
        st.caption(f"The deployment uses azureml:{result.deployment.model} from the workspace.")
    if st.session_state.get(PINNING_KEY):
        st.caption(st.session_state[PINNING_KEY])
    st.markdown("Deploy it from that folder (or from the unzipped download) with:")
    st.code("\n".join(result.commands), language="bash")
    shown = [name for name in result.files if not name.startswith("model/")]
    with_model = len(shown) < len(result.files)
    st.caption("Files: " + ", ".join(shown) + (" and the model folder" if with_model else ""))
    st.download_button(
        "Download as zip",
        data=zip_bytes(result.folder),
        file_name=f"{result.folder.name}.zip",
        mime="application/zip",
        icon=":material/download:",
        key="azure_export_download",
    )
    with st.expander(README_FILE):
        st.markdown((result.folder / README_FILE).read_text(encoding="utf-8"))
    return result
