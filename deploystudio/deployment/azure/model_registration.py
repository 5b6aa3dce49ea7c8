"""Register a model version in an Azure ML workspace, and learn the version Azure gives it.

Our registry's version numbers are not the workspace's: `iris-classifier` version 2 here may be
version 7 there, or not exist. So nothing assumes a number: `register_model` uploads the MLflow
folder through azure-ai-ml (`ml_client.models.create_or_update` with a real `Model` entity and no
version, which makes the SDK take the workspace's next version of that name) and returns the
`azureml:NAME:VERSION` that Azure answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploystudio.deployment.azure.errors import azure_errors
from deploystudio.deployment.azure.model_reference import AZURE_MODEL_NAME
from deploystudio.deployment.azure.output import sdk_output
from deploystudio.errors import AzureSpecError

# The tag that says where a registered version came from (our model URI).
SOURCE_TAG = "deploystudio.source"


@dataclass(frozen=True)
class RegisteredModel:
    """A version as the workspace registered it."""

    name: str
    version: str

    @property
    def reference(self) -> str:
        return f"azureml:{self.name}:{self.version}"


def model_asset(model_path: Path, name: str, source_uri: str, description: str = "") -> Any:
    """The azure-ai-ml `Model` entity (type mlflow_model, no version: the workspace numbers it)."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    if not AZURE_MODEL_NAME.match(name or ""):
        raise AzureSpecError(
            f"Model name {name!r} is not a valid Azure ML asset name: rename the model with "
            "letters, digits, dots, dashes or underscores."
        )
    if not (Path(model_path) / "MLmodel").is_file():
        raise AzureSpecError(f"{model_path} is not an MLflow model folder (no MLmodel file).")
    return Model(
        name=name,
        path=str(model_path),
        type=AssetTypes.MLFLOW_MODEL,
        description=description or f"Registered by Deploy Studio from {source_uri}.",
        tags={SOURCE_TAG: source_uri},
    )


def register_model(
    client: Any,
    model_path: Path,
    name: str,
    source_uri: str,
    progress: Callable[[str], None] = lambda message: None,
) -> RegisteredModel:
    """Upload and register the MLflow folder as a new version of `name` in the workspace of
    `client` (an azure-ai-ml MLClient); return the name and version Azure gave it."""
    entity = model_asset(model_path, name, source_uri)
    progress(f"Uploading {name} and registering it in the workspace")
    with azure_errors(f"register model {name!r} in the workspace"), sdk_output():
        created = client.models.create_or_update(entity)
    registered = RegisteredModel(str(created.name), str(created.version))
    progress(f"Registered as {registered.reference}")
    return registered
