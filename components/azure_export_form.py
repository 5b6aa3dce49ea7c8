"""The "Export for CI" form: a chosen model version (and optional scoring bundle) written as an
Azure ML folder in the studio's data folder, its `az ml` commands, and a zip download."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from components import services
from components.azure_fields import DeploymentFields, render_deployment_fields
from components.deploy_form import ModelChoice
from deploystudio.deployment.azure.export import README_FILE, ExportResult, export_online
from deploystudio.deployment.azure.pinning import Pinning, pinned_environment
from deploystudio.deployment.azure.specs import (
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    model_source,
    scoring_code,
)
from deploystudio.errors import DeployStudioError

RESULT_KEY = "azure_export_result"
PINNING_KEY = "azure_export_pinning"
EXPORTS_FOLDER = "exports"


def exports_root() -> Path:
    return services.get_settings().home / EXPORTS_FOLDER


def pinning(choice: ModelChoice) -> Pinning:
    """The environment a local deployment of the chosen model ran in, as the export's pins."""
    deployments = services.endpoint_target().list_deployments()
    return pinned_environment(choice.uri, deployments, services.get_settings().home)


def export_choice(choice: ModelChoice, fields: DeploymentFields) -> tuple[ExportResult, str]:
    """The export folder written, and what its conda files are pinned to (in words)."""
    settings = services.get_settings()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = exports_root() / f"{fields.endpoint}-{fields.deployment}-{stamp}"
    spec = OnlineDeploymentSpec(
        name=fields.deployment,
        endpoint_name=fields.endpoint,
        model=model_source(choice.uri, settings, fields.reference_in_azure, services.registry()),
        instance_type=fields.instance_type,
        instance_count=fields.instance_count,
        code=scoring_code(fields.bundle, settings) if fields.bundle else None,
    )
    pinned = (
        pinning(choice)
        if spec.model.local_path is not None
        else Pinning(None, "Not pinned: the model is referenced in Azure.")
    )
    result = export_online(
        folder,
        OnlineEndpointSpec(name=fields.endpoint, auth_mode=fields.auth_mode),
        spec,
        allowed_roots=[exports_root()],
        # The model environment its local deployment ran in: its exact versions go to Azure.
        pinned=pinned.environment,
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


def render_export_form(choice: ModelChoice) -> ExportResult | None:
    with st.form("azure_export"):
        fields = render_deployment_fields("azure_export", choice)
        submitted = st.form_submit_button(
            "Export", icon=":material/folder_zip:", key="azure_export_submit"
        )
    if submitted:
        try:
            with st.spinner("Writing the export folder and loading its YAML back..."):
                written, note = export_choice(choice, fields)
            st.session_state[RESULT_KEY] = written
            st.session_state[PINNING_KEY] = note
        except DeployStudioError as exc:
            st.error(str(exc))
    result: ExportResult | None = st.session_state.get(RESULT_KEY)
    if result is None or not result.folder.is_dir():
        return None
    st.success(f"Exported to `{result.folder}` ({len(result.files)} files).")
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
