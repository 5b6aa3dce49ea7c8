"""A batch job's settings as an Azure ML batch endpoint and model batch deployment (YAML).

Built with azure-ai-ml's entities, then loaded back with azure-ai-ml's own loaders to prove Azure
accepts them. `load_batch_deployment` refuses a model deployment's `settings:` block (see
LIBRARY-NOTES), so the deployment is checked with `load_model_batch_deployment`, the loader the
`type: model` YAML needs (not re-exported by `azure.ai.ml` in 1.35).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from azure.ai.ml import load_batch_endpoint
from azure.ai.ml.entities import (
    BatchEndpoint,
    BatchRetrySettings,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
    ResourceConfiguration,
)
from azure.ai.ml.entities._load_functions import load_model_batch_deployment

from deploystudio.deployment.azure.model_reference import azure_model_reference
from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.deployment.names import validate_name
from deploystudio.errors import BatchSettingsError

DEPLOYMENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json"
ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json"
DEFAULT_COMPUTE = "azureml:batch-cluster"


def batch_deployment(
    settings: BatchSettings,
    model_uri: str,
    endpoint_name: str,
    deployment_name: str,
    compute: str = DEFAULT_COMPUTE,
    instance_count: int = 1,
) -> ModelBatchDeployment:
    """The azure-ai-ml entity for these settings. A registered version becomes
    `azureml:NAME:VERSION`; any other model URI must be registered in Azure first."""
    validate_name(endpoint_name, "endpoint")
    validate_name(deployment_name, "deployment")
    model = azure_model_reference(model_uri)
    if model is None:
        raise BatchSettingsError(
            f"'{model_uri}' is not a registered model version Azure can name: export from a "
            "models:/NAME/VERSION URI (register the model in Azure under the same name)."
        )
    return ModelBatchDeployment(
        name=deployment_name,
        endpoint_name=endpoint_name,
        model=model,
        compute=compute,
        resources=ResourceConfiguration(instance_count=instance_count),
        settings=ModelBatchDeploymentSettings(
            mini_batch_size=settings.mini_batch_size,
            max_concurrency_per_instance=settings.max_concurrency_per_instance,
            output_action=settings.output_action.value,
            output_file_name=settings.output_file_name,
            retry_settings=BatchRetrySettings(
                max_retries=settings.max_retries, timeout=settings.timeout
            ),
            error_threshold=settings.error_threshold,
            logging_level=settings.logging_level,
        ),
    )


def batch_deployment_yaml(deployment: ModelBatchDeployment) -> str:
    """The deployment as YAML shaped like the Azure examples' `batch-deployment.yml`, checked by
    loading it back with azure-ai-ml."""
    spec = _plain(deployment._to_dict())
    # `_to_dict` also writes the legacy top-level error_threshold of BatchDeployment; the model
    # deployment schema keeps it under settings only.
    spec.pop("error_threshold", None)
    text = yaml.safe_dump({"$schema": DEPLOYMENT_SCHEMA, **_without_empty(spec)}, sort_keys=False)
    _check_loads(text, load_model_batch_deployment, "batch deployment")
    return text


def batch_endpoint_yaml(endpoint_name: str, description: str = "") -> str:
    """A batch endpoint (Microsoft Entra token auth, Azure's only mode for batch) as YAML."""
    validate_name(endpoint_name, "endpoint")
    endpoint = BatchEndpoint(name=endpoint_name, description=description or None)
    spec = _without_empty(_plain(endpoint._to_dict()))
    text = yaml.safe_dump({"$schema": ENDPOINT_SCHEMA, **spec}, sort_keys=False)
    _check_loads(text, load_batch_endpoint, "batch endpoint")
    return text


def _plain(value: Any) -> dict[str, Any]:
    # OrderedDicts -> plain dicts, so yaml.safe_dump accepts them (LIBRARY-NOTES).
    return json.loads(json.dumps(value))


def _without_empty(spec: dict[str, Any]) -> dict[str, Any]:
    cleaned = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            value = _without_empty(value)
        if value not in ({}, None, ""):
            cleaned[key] = value
    return cleaned


def _check_loads(text: str, loader: Any, what: str) -> None:
    with tempfile.TemporaryDirectory(prefix="deploystudio-batch-yaml-") as folder:
        path = Path(folder) / "spec.yml"
        path.write_text(text, encoding="utf-8")
        try:
            loader(str(path))
        except Exception as exc:  # azure-ai-ml's ValidationError/ValidationException family
            raise BatchSettingsError(f"azure-ai-ml does not accept the {what} YAML: {exc}") from exc
