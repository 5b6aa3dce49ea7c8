"""How a model is named in Azure ML: `azureml:NAME:VERSION`.

From our model URIs (a registered version whose name Azure accepts), and back from the ARM ids
the SDK reads from a deployment. Light on purpose: no azure-ai-ml import, so the CLI's parser
and the bundle, spec and batch YAML builders share it cheaply.
"""

from __future__ import annotations

import re
from typing import Any

from deploystudio.errors import InvalidModelUriError
from deploystudio.model_uri import ModelUriKind, parse_model_uri

# Azure ML asset names: a letter or digit, then letters, digits, '.', '_' or '-'.
AZURE_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def azure_model_reference(model_uri: str) -> str | None:
    """`azureml:NAME:VERSION` for a registered version whose name Azure accepts, else None
    (the deployment then takes the model from the local `model/` folder)."""
    try:
        reference = parse_model_uri(model_uri)
    except InvalidModelUriError:
        return None
    if reference.kind is ModelUriKind.REGISTERED_VERSION and AZURE_MODEL_NAME.match(
        reference.name
    ):
        return f"azureml:{reference.name}:{reference.version}"
    return None


def azure_model_name(model: Any) -> str | None:
    """`azureml:NAME:VERSION` for the ARM id the SDK reads back (.../models/N/versions/V)."""
    text = str(getattr(model, "id", None) or model or "")
    parts = text.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-4] == "models" and parts[-2] == "versions":
        return f"azureml:{parts[-3]}:{parts[-1]}"
    return text or None
