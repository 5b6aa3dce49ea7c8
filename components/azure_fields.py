"""The deployment settings both Azure forms ask for (inside the caller's st.form)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from components import services
from components.bundle_choice import marked, unvalidated_labels, warn_if_unvalidated
from components.deploy_form import ModelChoice, bundles_for
from deploystudio.customization.bundles import bundle_store
from deploystudio.deployment.azure.specs import (
    AUTH_MODES,
    DEFAULT_INSTANCE_TYPE,
    MAX_INSTANCE_COUNT,
)
from deploystudio.deployment.deploy_request import suggest_endpoint_name
from deploystudio.deployment.names import NAME_RULE

NO_BUNDLE = "No scoring script (Azure's no-code MLflow deployment)"
# Where Azure gets the model. Never a version number guessed from ours: our version 2 may be
# another version, or none, in the workspace.
MODEL_UPLOAD = "upload"
MODEL_REGISTER = "register"
MODEL_IN_WORKSPACE = "workspace"
MODEL_LABELS = {
    MODEL_UPLOAD: "Upload its files with the deployment (Azure numbers the new version)",
    MODEL_REGISTER: "Register it in the workspace now, and use the version Azure gives it",
    MODEL_IN_WORKSPACE: "It is already registered in the workspace, as the version below",
}
AUTH_HELP = {
    "key": "Callers send one of two keys you can rotate.",
    "aml_token": "Azure ML tokens that expire (az ml online-endpoint get-credentials).",
    "aad_token": "Microsoft Entra tokens of the caller's identity.",
}


@dataclass(frozen=True)
class DeploymentFields:
    endpoint: str
    deployment: str
    auth_mode: str
    instance_type: str
    instance_count: int
    bundle: str | None
    # MODEL_UPLOAD, MODEL_REGISTER or MODEL_IN_WORKSPACE, and for the last the workspace's
    # version as the user typed it (checked by model_reference.workspace_reference).
    model_in_azure: str = MODEL_UPLOAD
    workspace_version: str = ""


def render_deployment_fields(
    prefix: str, choice: ModelChoice, offer_registration: bool = False
) -> DeploymentFields:
    """The fields, inside the caller's form. `offer_registration`: the form can register the
    model in the workspace itself (the export; a deploy that uploads registers it anyway)."""
    names = st.columns(2)
    endpoint = names[0].text_input(
        "Endpoint name",
        value=suggest_endpoint_name(choice.name, ()),
        help=NAME_RULE,
        key=f"{prefix}_endpoint__{choice.name}",
    )
    deployment = names[1].text_input(
        "Deployment name", value="blue", help=NAME_RULE, key=f"{prefix}_deployment"
    )
    sizes = st.columns(3)
    instance_type = sizes[0].text_input(
        "Instance type", value=DEFAULT_INSTANCE_TYPE, key=f"{prefix}_instance_type"
    )
    instance_count = sizes[1].number_input(
        "Instance count",
        min_value=1,
        max_value=MAX_INSTANCE_COUNT,
        value=1,
        step=1,
        key=f"{prefix}_instance_count",
    )
    auth_mode = sizes[2].selectbox(
        "Auth mode",
        AUTH_MODES,
        format_func=lambda mode: mode,
        help=" ".join(f"{mode}: {text}" for mode, text in AUTH_HELP.items()),
        key=f"{prefix}_auth_mode",
    )
    bundles = bundles_for(bundle_store(services.get_settings()), choice.name)
    labels = [NO_BUNDLE] + [b.label for b in bundles]
    unvalidated = unvalidated_labels(bundles)
    bundle = st.selectbox(
        "Scoring bundle",
        labels,
        format_func=lambda label: marked(label, unvalidated),
        key=f"{prefix}_bundle__{choice.name}",
        help="A score.py and its environment saved on the Customize page.",
    )
    warn_if_unvalidated(bundle, unvalidated)
    modes = [MODEL_UPLOAD, MODEL_REGISTER, MODEL_IN_WORKSPACE]
    if not offer_registration:
        modes.remove(MODEL_REGISTER)
    model_in_azure = st.radio(
        f"{choice.name} in the Azure ML workspace",
        modes,
        index=0,
        format_func=MODEL_LABELS.__getitem__,
        key=f"{prefix}_model_in_azure",
        help=f"Version {choice.version.version} here is not a version number in the workspace: "
        "the workspace numbers its own versions.",
    )
    workspace_version = st.text_input(
        "Its version in the workspace",
        placeholder="e.g. 3",
        key=f"{prefix}_workspace_version",
        help=f"Only for a model already registered: the version Azure ML studio shows under "
        f"Models > {choice.name} (used as azureml:{choice.name}:VERSION).",
    )
    return DeploymentFields(
        endpoint=endpoint.strip(),
        deployment=deployment.strip(),
        auth_mode=str(auth_mode),
        instance_type=instance_type.strip(),
        instance_count=int(instance_count),
        bundle=None if bundle == NO_BUNDLE else bundle,
        model_in_azure=str(model_in_azure),
        workspace_version=workspace_version.strip(),
    )
