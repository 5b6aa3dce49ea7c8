"""Our endpoint and deployment settings as azure-ai-ml online entities.

Plain frozen dataclasses describe what the user configured; `endpoint_entity` and
`deployment_entity` turn them into `ManagedOnlineEndpoint` / `ManagedOnlineDeployment` (the SDK
objects both the YAML export and the workspace calls use). Values Azure would refuse are refused
here first with an AzureSpecError (or the shared InvalidNameError / TrafficError), so a user
learns about them before a long Azure operation fails.

Batch: deploystudio/deployment/batch/azure_yaml.py builds BatchEndpoint / ModelBatchDeployment
from a
batch job's settings; an Azure batch export calls it next to `export_online` (not built here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploystudio.config import Settings
from deploystudio.deployment.azure.model_reference import (
    azure_model_reference,
    workspace_reference,
)
from deploystudio.deployment.base import AZURE_AUTH_MODES, AuthMode, Deployment
from deploystudio.deployment.local.routing import MAX_REQUEST_TIMEOUT_MS, REQUEST_SETTINGS
from deploystudio.deployment.names import validate_name
from deploystudio.deployment.store_records import ENV_SETTING
from deploystudio.deployment.traffic import checked_traffic, single_mirror
from deploystudio.errors import AzureSpecError, InvalidModelUriError
from deploystudio.model_uri import ModelUriKind, parse_model_uri

AUTH_MODES = tuple(mode.value for mode in AZURE_AUTH_MODES)
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"
# Azure VM size names (Standard_DS3_v2, Standard_F2s_v2, ...): letters, digits, underscores.
_INSTANCE_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,63}$")
# Azure ML asset names: what `azureml:NAME:VERSION` may hold.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Managed online deployments: Azure's documented limit is 20 instances per deployment by default.
MAX_INSTANCE_COUNT = 20
PROBE_FIELDS = ("initial_delay", "period", "timeout", "failure_threshold", "success_threshold")
REQUEST_FIELDS = ("request_timeout_ms", "max_concurrent_requests_per_instance", "max_queue_wait_ms")


@dataclass(frozen=True)
class ModelSource:
    """Where Azure gets the model: an MLflow folder it uploads and registers (`local_path`, with
    the asset `name` and `version` to register it as), or an asset already in the workspace
    (`azure_reference`, e.g. "azureml:iris-classifier:2")."""

    local_path: Path | None = None
    name: str | None = None
    version: str | None = None
    azure_reference: str | None = None

    def __post_init__(self) -> None:
        if (self.local_path is None) == (self.azure_reference is None):
            raise AzureSpecError(
                "Give the model either as a local MLflow folder or as azureml:NAME:VERSION."
            )


@dataclass(frozen=True)
class ScoringCode:
    """A scoring script and its environment (a scoring bundle's files)."""

    code_folder: Path
    scoring_script: str
    conda_file: Path
    image: str


@dataclass(frozen=True)
class OnlineEndpointSpec:
    name: str
    auth_mode: AuthMode | str = AuthMode.KEY
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    traffic: Mapping[str, int] = field(default_factory=dict)
    mirror_traffic: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OnlineDeploymentSpec:
    name: str
    endpoint_name: str
    model: ModelSource
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    # Subsets of REQUEST_FIELDS / PROBE_FIELDS with whole-number values; empty = Azure defaults.
    request_settings: Mapping[str, int] = field(default_factory=dict)
    liveness_probe: Mapping[str, int] = field(default_factory=dict)
    readiness_probe: Mapping[str, int] = field(default_factory=dict)
    # Name -> value; may hold secrets, so never logged (the record keeps the names only).
    environment_variables: Mapping[str, str] = field(default_factory=dict, repr=False)
    code: ScoringCode | None = None
    description: str = ""


def validate_traffic(
    deployments: Iterable[str],
    traffic: Mapping[str, int],
    mirror_traffic: Mapping[str, int] | None = None,
) -> None:
    """Azure's traffic rules (deployment/traffic.py), as the local store enforces them, on an
    Azure endpoint's `traffic` and `mirror_traffic`. Raises TrafficError naming the broken rule.
    """
    checked_traffic(deployments, traffic, single_mirror(mirror_traffic))


def endpoint_entity(spec: OnlineEndpointSpec, deployments: Iterable[str] = ()) -> Any:
    """The ManagedOnlineEndpoint for `spec`; traffic is checked against `deployments`."""
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    validate_name(spec.name, "endpoint")
    if spec.auth_mode not in AUTH_MODES:
        raise AzureSpecError(
            f"Auth mode {str(spec.auth_mode)!r} is not one Azure online endpoints take: choose "
            + ", ".join(repr(m) for m in AUTH_MODES)
            + " (key: keys you can rotate; aml_token: Azure ML tokens that expire; aad_token: "
            "Microsoft Entra tokens)."
        )
    if spec.traffic or spec.mirror_traffic:
        validate_traffic(deployments, spec.traffic, spec.mirror_traffic)
    return ManagedOnlineEndpoint(
        name=spec.name,
        auth_mode=str(spec.auth_mode),
        description=spec.description or None,
        tags=dict(spec.tags) or None,
        traffic=dict(spec.traffic) or None,
        mirror_traffic=dict(spec.mirror_traffic) or None,
    )


def model_entity(source: ModelSource) -> Any:
    """`Model(type=mlflow_model, path=...)` for a local folder, or the `azureml:` reference."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    if source.azure_reference is not None:
        return source.azure_reference
    return Model(
        type=AssetTypes.MLFLOW_MODEL,
        path=str(source.local_path),
        name=source.name,
        version=source.version,
    )


def deployment_entity(spec: OnlineDeploymentSpec) -> Any:
    """The ManagedOnlineDeployment for `spec` (no-code MLflow, or with a scoring script)."""
    from azure.ai.ml.entities import (
        CodeConfiguration,
        Environment,
        ManagedOnlineDeployment,
        OnlineRequestSettings,
        ProbeSettings,
    )

    validate_name(spec.endpoint_name, "endpoint")
    validate_name(spec.name, "deployment")
    check_instances(spec.instance_type, spec.instance_count)
    request = _whole_numbers("request_settings", spec.request_settings, REQUEST_FIELDS)
    timeout = request.get("request_timeout_ms")
    if timeout is not None and not 1 <= timeout <= MAX_REQUEST_TIMEOUT_MS:
        raise AzureSpecError(
            f"request_timeout_ms {timeout} is outside Azure's range 1-{MAX_REQUEST_TIMEOUT_MS}."
        )
    probes = {
        which: _whole_numbers(which, values, PROBE_FIELDS)
        for which, values in (
            ("liveness_probe", spec.liveness_probe),
            ("readiness_probe", spec.readiness_probe),
        )
    }
    for name in spec.environment_variables:
        if not _ENV_NAME.match(name):
            raise AzureSpecError(
                f"Environment variable name {name!r} is not valid: use letters, digits and "
                "underscores, not starting with a digit."
            )
    code_configuration = environment = None
    if spec.code is not None:
        if not (spec.code.code_folder / spec.code.scoring_script).is_file():
            raise AzureSpecError(
                f"The scoring script {spec.code.scoring_script} is not in "
                f"{spec.code.code_folder}: save the bundle again."
            )
        code_configuration = CodeConfiguration(
            code=str(spec.code.code_folder), scoring_script=spec.code.scoring_script
        )
        # Environment reads the conda file in its constructor (LIBRARY-NOTES).
        environment = Environment(conda_file=str(spec.code.conda_file), image=spec.code.image)
    return ManagedOnlineDeployment(
        name=spec.name,
        endpoint_name=spec.endpoint_name,
        description=spec.description or None,
        model=model_entity(spec.model),
        code_configuration=code_configuration,
        environment=environment,
        instance_type=spec.instance_type,
        instance_count=spec.instance_count,
        request_settings=OnlineRequestSettings(**request) if request else None,
        liveness_probe=_probe(ProbeSettings, probes["liveness_probe"]),
        readiness_probe=_probe(ProbeSettings, probes["readiness_probe"]),
        environment_variables=dict(spec.environment_variables) or None,
    )


def _probe(probe_class: Any, values: Mapping[str, int]) -> Any:
    return probe_class(**values) if values else None


def check_instances(instance_type: str, instance_count: int) -> None:
    if not isinstance(instance_type, str) or not _INSTANCE_TYPE.match(instance_type):
        raise AzureSpecError(
            f"Instance type {instance_type!r} is not an Azure VM size: use one like "
            f"{DEFAULT_INSTANCE_TYPE} (see the managed online endpoints SKU list)."
        )
    if (
        isinstance(instance_count, bool)
        or not isinstance(instance_count, int)
        or not 1 <= instance_count <= MAX_INSTANCE_COUNT
    ):
        raise AzureSpecError(
            f"Instance count {instance_count!r} must be a whole number from 1 to "
            f"{MAX_INSTANCE_COUNT}."
        )


def _whole_numbers(what: str, values: Mapping[str, Any], allowed: tuple[str, ...]) -> dict:
    checked = {}
    for key, value in values.items():
        if key not in allowed:
            raise AzureSpecError(f"{what} has no setting {key!r}: use {', '.join(allowed)}.")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AzureSpecError(
                f"{what}.{key} must be a whole number of 0 or more, not {value!r}."
            )
        checked[key] = value
    return checked


def model_source(
    model_uri: str,
    settings: Settings,
    reference_in_azure: bool = False,
    registry: Any = None,
    workspace_version: str | None = None,
) -> ModelSource:
    """Where Azure gets `model_uri` from.

    `workspace_version`: the version is registered in the workspace as this version of the
    same name (`azureml:NAME:workspace_version`), as the user read it there or as registering
    it returned. `reference_in_azure` (the Deploy form's older records): as the same version
    number as here. Otherwise the model's files are fetched from our registry (cached) and Azure
    uploads them as an mlflow_model asset of the same name.
    """
    # Imported here: the CLI parser imports us, and prediction is slow to import.
    from deploystudio.prediction import local_model_path

    try:
        reference = parse_model_uri(model_uri)
    except InvalidModelUriError as exc:
        raise AzureSpecError(str(exc)) from exc
    if workspace_version is not None:
        if reference.kind not in (
            ModelUriKind.REGISTERED_VERSION,
            ModelUriKind.REGISTERED_ALIAS,
        ):
            raise AzureSpecError(
                f"'{model_uri}' is not a registered model: only a registered version has a name "
                "to look up in the workspace. Export its files instead."
            )
        return ModelSource(azure_reference=workspace_reference(reference.name, workspace_version))
    if reference_in_azure:
        azure = azure_model_reference(model_uri)
        if azure is None:
            raise AzureSpecError(
                f"'{model_uri}' cannot be referenced in Azure: only a registered version "
                "(models:/NAME/VERSION) whose name Azure accepts can be azureml:NAME:VERSION."
            )
        return ModelSource(azure_reference=azure)
    path = local_model_path(model_uri, settings, registry)
    if reference.kind is ModelUriKind.REGISTERED_VERSION:
        name, version = reference.name, str(reference.version)
    elif reference.kind is ModelUriKind.REGISTERED_ALIAS:
        name, version = reference.name, None
    else:
        name, version = path.name, None
    if not _ASSET_NAME.match(name or ""):
        raise AzureSpecError(
            f"Model name {name!r} is not a valid Azure ML asset name: rename the model with "
            "letters, digits, dots, dashes or underscores."
        )
    return ModelSource(local_path=path, name=name, version=version)


def scoring_code(bundle_label: str, settings: Settings) -> ScoringCode:
    """The files of scoring bundle "name:version" from the studio's bundle store."""
    from deploystudio.customization.bundles import CONDA_FILE, SCRIPT_FILE, bundle_store

    name, _, version = bundle_label.partition(":")
    if not version.isdigit():
        raise AzureSpecError(
            f"Scoring bundle {bundle_label!r} must be written name:version, e.g. 'my-score:1'."
        )
    bundle = bundle_store(settings).get(name, int(version))
    return ScoringCode(
        code_folder=bundle.path,
        scoring_script=SCRIPT_FILE,
        conda_file=bundle.path / CONDA_FILE,
        image=bundle.base_image,
    )


def deployment_spec_from_record(
    record: Deployment,
    settings: Settings,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    reference_in_azure: bool = False,
    environ: Mapping[str, str] | None = None,
) -> OnlineDeploymentSpec:
    """The Azure spec of a deployment record (a local deployment moving to Azure, or an Azure
    record): instance count, request settings, probes and environment variable names from its
    settings; variable values from `environ`, as a local server reads them when it starts."""
    env = os.environ if environ is None else environ
    values = record.settings
    names = values.get(ENV_SETTING, [])
    missing = [n for n in names if n not in env]
    if missing:
        raise AzureSpecError(
            f"The deployment needs environment variables that are not set here: "
            f"{', '.join(missing)}. Set them, then try again."
        )
    request = dict(values.get(REQUEST_SETTINGS) or {})
    for key in REQUEST_FIELDS:
        if key in values:
            request[key] = values[key]
    return OnlineDeploymentSpec(
        name=record.name,
        endpoint_name=record.endpoint_name,
        model=model_source(record.model_uri, settings, reference_in_azure),
        instance_type=values.get("instance_type", instance_type),
        instance_count=values.get("instance_count", 1),
        request_settings=request,
        liveness_probe=values.get("liveness_probe") or {},
        readiness_probe=values.get("readiness_probe") or {},
        environment_variables={n: env[n] for n in names},
        code=scoring_code(record.bundle, settings) if record.bundle else None,
    )
