"""How a model is named in Azure ML: `azureml:NAME:VERSION`.

From our model URIs (a registered version whose name Azure accepts), and back from the ARM ids
the SDK reads from a deployment. Light on purpose: no azure-ai-ml import, so the CLI's parser
and the bundle, spec and batch YAML builders share it cheaply.
"""

from __future__ import annotations

import re
from typing import Any

from deploystudio.errors import AzureSpecError, InvalidModelUriError
from deploystudio.model_uri import ModelUriKind, parse_model_uri

# Azure ML asset names: a letter or digit, then letters, digits, '.', '_' or '-'.
AZURE_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# Asset versions: Azure numbers model versions 1, 2, ...; a version given by hand may be any
# short token of the same characters as a name.
AZURE_MODEL_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")


def workspace_reference(name: str, version: str) -> str:
    """`azureml:NAME:VERSION` for a model version the user says is in the workspace. The
    version is the workspace's, which need not be our registry's number: it is asked, never
    guessed."""
    version = str(version).strip()
    if not AZURE_MODEL_NAME.match(name or ""):
        raise AzureSpecError(
            f"Model name {name!r} is not a valid Azure ML asset name: letters, digits, dots, "
            "dashes or underscores."
        )
    if not version:
        raise AzureSpecError(
            f"Give the version of {name} as the workspace numbers it (Azure ML studio > Models > "
            f"{name}), or let the export register the model or upload its files."
        )
    if not AZURE_MODEL_VERSION.match(version):
        raise AzureSpecError(
            f"{version!r} is not an Azure ML model version: a number such as 3, as the "
            "workspace shows it."
        )
    return f"azureml:{name}:{version}"


def azure_model_reference(model_uri: str) -> str | None:
    """`azureml:NAME:VERSION` for a registered version whose name Azure accepts, else None
    (the deployment then takes the model from the local `model/` folder)."""
    try:
        reference = parse_model_uri(model_uri)
    except InvalidModelUriError:
        return None
    if reference.kind is ModelUriKind.REGISTERED_VERSION and AZURE_MODEL_NAME.match(reference.name):
        return f"azureml:{reference.name}:{reference.version}"
    return None


def azure_model_name(model: Any) -> str | None:
    """`azureml:NAME:VERSION` for the ARM id the SDK reads back (.../models/N/versions/V)."""
    text = str(getattr(model, "id", None) or model or "")
    parts = text.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-4] == "models" and parts[-2] == "versions":
        return f"azureml:{parts[-3]}:{parts[-1]}"
    return text or None
