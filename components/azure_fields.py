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
    reference_in_azure: bool


def render_deployment_fields(prefix: str, choice: ModelChoice) -> DeploymentFields:
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
    reference = st.checkbox(
        f"The model is registered in the workspace as azureml:{choice.name}:"
        f"{choice.version.version}",
        value=True,
        help="Otherwise its files are uploaded and registered under that name and version.",
        key=f"{prefix}_reference",
    )
    return DeploymentFields(
        endpoint=endpoint.strip(),
        deployment=deployment.strip(),
        auth_mode=str(auth_mode),
        instance_type=instance_type.strip(),
        instance_count=int(instance_count),
        bundle=None if bundle == NO_BUNDLE else bundle,
        reference_in_azure=reference,
    )
