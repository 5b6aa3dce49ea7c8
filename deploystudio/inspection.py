"""Describe one model version: flavors, signature, input example, environment, artifacts, run,
and a deployability report that says what will work when it is served and what will break."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import DataType, Schema

from deploystudio.checks import Check, CheckStatus
from deploystudio.config import Settings
from deploystudio.deployment.adaptive_batching import batching_check
from deploystudio.environment_report import (
    EnvironmentFiles,
    environment_checks,
    read_environment_files,
)
from deploystudio.errors import DeployStudioError, InvalidModelError
from deploystudio.model_files import (
    ArtifactEntry,
    LocalModelFiles,
    ModelFiles,
    RegistryModelFiles,
    safe_relative_path,
)
from deploystudio.model_location import contained_folder
from deploystudio.model_uri import ModelReference, ModelUriKind, parse_model_uri
from deploystudio.registry import Registry, RunSummary, VersionSummary

PYFUNC = "python_function"
LARGE_MODEL_BYTES = 1 << 30
# MLmodel files are a few KB (a 10,000-column signature is about 0.5 MB); parsing a larger one
# would hold the page for seconds.
MAX_MLMODEL_BYTES = 2 * 1024 * 1024
# libyaml's loader when PyYAML has it: the same safe loading, ten times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class FlavorInfo:
    name: str
    loader_module: str | None
    framework_version: str | None
    serialization_format: str | None
    python_version: str | None
    details: dict[str, str]


@dataclass(frozen=True)
class SchemaField:
    """A column (name, type, required) or a tensor (name, dtype, shape)."""

    name: str | None
    type: str
    required: bool
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ParamField:
    name: str
    type: str
    default: Any
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class SignatureInfo:
    input_kind: str  # "columns" or "tensors"
    inputs: list[SchemaField]
    output_kind: str | None
    outputs: list[SchemaField]
    params: list[ParamField]


@dataclass
class ModelInspection:
    uri: str
    resolved_uri: str
    reference: ModelReference
    version: VersionSummary | None
    flavors: list[FlavorInfo]
    signature: SignatureInfo | None
    input_example: pd.DataFrame | np.ndarray | dict | None
    input_example_params: dict | None
    input_example_error: str | None
    environment: EnvironmentFiles
    artifacts: list[ArtifactEntry]
    artifacts_truncated: bool
    total_size_bytes: int
    run: RunSummary | None
    mlflow_version: str | None
    created: str | None
    report: list[Check] = field(default_factory=list)

    @property
    def has_pyfunc(self) -> bool:
        return any(f.name == PYFUNC for f in self.flavors)


def inspect_model(
    uri: str,
    settings: Settings,
    registry: Registry | None = None,
    allowed_local_roots: tuple[Path, ...] | None = None,
) -> ModelInspection:
    """Inspect `uri`. With `allowed_local_roots`, a local folder must lie inside one of them
    (pages pass the configured roots; the CLI passes None, its user may open any folder)."""
    reference = parse_model_uri(uri)
    version: VersionSummary | None = None
    resolved = reference.uri
    if reference.is_registered:
        registry = registry or Registry(settings.tracking_uri, settings.registry_uri)
        number = reference.version or registry.resolve_alias(reference.name, reference.alias)
        version = registry.get_version(reference.name, number)
        resolved = f"models:/{reference.name}/{number}"
    if reference.kind is not ModelUriKind.LOCAL_FOLDER:
        registry = registry or Registry(settings.tracking_uri, settings.registry_uri)
    files = _open_files(reference, resolved, settings, registry, allowed_local_roots)
    model, created = _load_mlmodel(files, uri)
    flavor_python = _text(_flavor_conf(model, PYFUNC).get("python_version"))
    environment = read_environment_files(files, flavor_python)
    example, example_params, example_error = _input_example(model, files)
    artifacts, truncated = files.list_artifacts()
    run_id = (version.run_id if version else None) or model.run_id or reference.run_id
    run = registry.get_run(run_id) if run_id and registry is not None else None
    inspection = ModelInspection(
        uri=uri,
        resolved_uri=resolved,
        reference=reference,
        version=version,
        flavors=_flavors(model),
        signature=describe_signature(model.signature),
        input_example=example,
        input_example_params=example_params,
        input_example_error=example_error,
        environment=environment,
        artifacts=artifacts,
        artifacts_truncated=truncated,
        total_size_bytes=sum(a.size or 0 for a in artifacts if not a.is_dir),
        run=run,
        mlflow_version=model.mlflow_version,
        created=created,
    )
    inspection.report = deployability_report(inspection)
    return inspection


def _open_files(
    reference: ModelReference,
    resolved: str,
    settings: Settings,
    registry: Registry,
    allowed_local_roots: tuple[Path, ...] | None,
) -> ModelFiles:
    if reference.kind is ModelUriKind.LOCAL_FOLDER:
        return LocalModelFiles(contained_folder(reference.local_path, allowed_local_roots))
    # artifact_location checks the location with model_location.contained_location.
    location = registry.artifact_location(parse_model_uri(resolved))
    return RegistryModelFiles(resolved, location, settings.inspection_cache, settings.tracking_uri)


def _load_mlmodel(files: ModelFiles, uri: str) -> tuple[Model, str | None]:
    """The parsed MLmodel and its creation time as written (Model.load fills in "now")."""
    path = files.fetch("MLmodel")
    if path is None:
        raise InvalidModelError(f"{uri} has no MLmodel file: it is not an MLflow model.")
    size = path.stat().st_size
    if size > MAX_MLMODEL_BYTES:
        raise InvalidModelError(
            f"The MLmodel file of {uri} is {format_bytes(size)}, far more than an MLmodel file "
            f"holds (a few KB; at most {format_bytes(MAX_MLMODEL_BYTES)} is read). Re-log the "
            "model without the large metadata."
        )
    raw = None
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        if not isinstance(raw, dict):
            raise ValueError("the file is not a YAML mapping")
        model = Model.from_dict(raw)
    except Exception as exc:  # yaml, schema and type errors alike mean "corrupt MLmodel"
        field_name = _broken_field(raw) if isinstance(raw, dict) else None
        where = f" (its '{field_name}' field)" if field_name else ""
        raise InvalidModelError(
            f"The MLmodel file of {uri} cannot be read{where}: {type(exc).__name__}: {exc}. "
            "Re-log the model, or fix the YAML by hand."
        ) from exc
    if not isinstance(model.flavors, dict) or not model.flavors:
        raise InvalidModelError(
            f"The MLmodel file of {uri} lists no flavors (its 'flavors' field is missing or "
            "not a mapping): it is not a model MLflow can load. Re-log the model."
        )
    if model.signature is not None and not isinstance(model.signature, ModelSignature):
        raise InvalidModelError(
            f"The 'signature' field of the MLmodel file of {uri} is not a signature (inputs and "
            "outputs). Re-log the model with signature=infer_signature(X, model.predict(X))."
        )
    created = raw.get("utc_time_created")
    return model, str(created) if created else None


def _broken_field(raw: dict) -> str | None:
    """The top-level MLmodel field without which `Model.from_dict` succeeds, if there is one:
    MLflow's errors (a JSON or schema error) do not say which field they come from."""
    for name in ("signature", "saved_input_example_info", "flavors", "metadata"):
        if name not in raw:
            continue
        try:
            Model.from_dict({k: v for k, v in raw.items() if k != name})
        except Exception:  # still broken without it: not this field
            continue
        return name
    return None


def _flavor_conf(model: Model, name: str) -> dict:
    """A flavor's settings; a flavor written as a list or a string has none we can read."""
    conf = model.flavors.get(name)
    return conf if isinstance(conf, dict) else {}


def _text(value: Any) -> str | None:
    # MLmodel fields are written by hand at times: a version of 3.1 is a YAML number.
    return None if value is None else str(value)


def _flavors(model: Model) -> list[FlavorInfo]:
    python_version = _text(_flavor_conf(model, PYFUNC).get("python_version"))
    flavors = []
    for name, conf in model.flavors.items():
        conf = conf if isinstance(conf, dict) else {}
        framework_version = conf.get(f"{name}_version") or conf.get("version")
        if name == PYFUNC:
            framework_version = framework_version or model.mlflow_version
        flavors.append(
            FlavorInfo(
                name=name,
                loader_module=_text(conf.get("loader_module")),
                framework_version=str(framework_version) if framework_version else None,
                serialization_format=_text(conf.get("serialization_format")),
                python_version=_text(conf.get("python_version")) or python_version,
                details={k: str(v) for k, v in conf.items() if not isinstance(v, dict | list)},
            )
        )
    return flavors


def _schema_fields(schema: Schema) -> list[SchemaField]:
    if schema.is_tensor_spec():
        return [
            SchemaField(name=spec.name, type=str(spec.type), required=True, shape=tuple(spec.shape))
            for spec in schema.inputs
        ]
    return [
        SchemaField(name=spec.name, type=_type_name(spec.type), required=spec.required)
        for spec in schema.inputs
    ]


def _type_name(col_type: Any) -> str:
    # Scalar types are DataType members ("double"); Array, Object and Map print as their spec.
    return col_type.name if isinstance(col_type, DataType) else str(col_type)


def describe_signature(signature: ModelSignature | None) -> SignatureInfo | None:
    if signature is None or signature.inputs is None:
        return None
    outputs = signature.outputs
    params = signature.params.params if signature.params is not None else []
    return SignatureInfo(
        input_kind="tensors" if signature.inputs.is_tensor_spec() else "columns",
        inputs=_schema_fields(signature.inputs),
        output_kind=None
        if outputs is None
        else ("tensors" if outputs.is_tensor_spec() else "columns"),
        outputs=[] if outputs is None else _schema_fields(outputs),
        params=[
            ParamField(
                p.name,
                _type_name(p.dtype),
                p.default,
                tuple(p.shape) if p.shape is not None else None,
            )
            for p in params
        ],
    )


def _input_example(model: Model, files: ModelFiles) -> tuple[Any, dict | None, str | None]:
    info = model.saved_input_example_info
    if not info:
        return None, None, None
    if not isinstance(info, dict):
        message = "The 'saved_input_example_info' field of MLmodel is not a mapping, so the "
        return None, None, message + "input example cannot be found."
    try:
        relative = safe_relative_path(info.get("artifact_path", ""))
        if files.fetch(relative) is None:
            return None, None, f"MLmodel names an input example '{relative}' that is missing."
        example = model.load_input_example(str(files.local_root))
        params = model.load_input_example_params(str(files.local_root))
    except (DeployStudioError, MlflowException, ValueError, OSError) as exc:
        named = str(info.get("artifact_path", ""))[:100]
        return None, None, f"The input example '{named}' cannot be read: {exc}"
    except (KeyError, TypeError, AttributeError) as exc:  # MLflow's readers on odd metadata
        where = "'saved_input_example_info' in MLmodel or the example file is malformed"
        return None, None, f"The input example cannot be read: {where} ({exc!r})."
    return example, params, None


# --- the deployability report ------------------------------------------------------------------


def deployability_report(inspection: ModelInspection) -> list[Check]:
    checks = [
        _pyfunc_check(inspection),
        _signature_check(inspection),
        _input_example_check(inspection),
        _payload_format_check(inspection),
        *environment_checks(
            inspection.environment, _text(inspection.mlflow_version), _saved_with(inspection)
        ),
        _size_check(inspection),
        _batching_check(inspection),
    ]
    return [c for c in checks if c is not None]


def _saved_with(inspection: ModelInspection) -> dict[str, str]:
    return {
        flavor.name: flavor.framework_version
        for flavor in inspection.flavors
        if flavor.name != PYFUNC and flavor.framework_version
    }


def _pyfunc_check(inspection: ModelInspection) -> Check:
    pyfunc = next((f for f in inspection.flavors if f.name == PYFUNC), None)
    if pyfunc and not pyfunc.loader_module:
        return Check(
            "No-code deployment",
            CheckStatus.FAIL,
            "The python_function flavor in MLmodel names no loader_module: MLflow cannot load "
            "the model.",
            "Re-log the model with its flavor's log_model (or mlflow.pyfunc.log_model).",
        )
    if pyfunc and not module_available(pyfunc.loader_module):
        return Check(
            "No-code deployment",
            CheckStatus.WARN,
            f"The python_function flavor's loader_module '{pyfunc.loader_module}' is not "
            "installed here: previews cannot load the model, and a served environment must "
            "install the package that provides it.",
            "Add that package to the model's requirements, or re-log the model.",
        )
    if pyfunc:
        return Check(
            "No-code deployment",
            CheckStatus.PASS,
            f"Has a python_function flavor (loader {pyfunc.loader_module}): Azure ML and the "
            "MLflow scoring server can serve it without a scoring script.",
        )
    names = ", ".join(f.name for f in inspection.flavors)
    return Check(
        "No-code deployment",
        CheckStatus.FAIL,
        f"No python_function flavor (flavors: {names}): it cannot be served without code.",
        "Re-log it with a flavor that has a pyfunc loader, or deploy it with a scoring script "
        "(Customize).",
    )


def module_available(name: str) -> bool:
    """Whether module `name` can be found here, without running any code: a parent package
    that is not imported yet would have to be imported (and run) to look inside it, so a name
    under one counts as available."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in sys.modules:
            continue
        if end > 1 and ".".join(parts[: end - 1]) not in sys.modules:
            return True
        try:
            if importlib.util.find_spec(prefix) is None:
                return False
        except (ImportError, ValueError):  # an empty or malformed name
            return False
    return True


def _signature_check(inspection: ModelInspection) -> Check:
    signature = inspection.signature
    if signature is None:
        return Check(
            "Signature",
            CheckStatus.WARN,
            "No signature: requests are not checked, so a wrong or missing column fails inside "
            "the model, or silently gives wrong answers.",
            "Re-log with signature=infer_signature(X, model.predict(X)).",
        )
    what = "tensor" if signature.input_kind == "tensors" else "column"
    params = f" and {len(signature.params)} param(s)" if signature.params else ""
    return Check(
        "Signature",
        CheckStatus.PASS,
        f"Inputs are checked against {len(signature.inputs)} {what}(s){params}.",
    )


def _input_example_check(inspection: ModelInspection) -> Check:
    if inspection.input_example is not None:
        return Check(
            "Input example",
            CheckStatus.PASS,
            "Present: previews and validation can run without your own data.",
        )
    if inspection.input_example_error:
        return Check(
            "Input example",
            CheckStatus.WARN,
            inspection.input_example_error,
            "Re-log the model with input_example=...",
        )
    return Check(
        "Input example",
        CheckStatus.WARN,
        "None logged: previews, script validation and smoke tests need data from you.",
        "Re-log the model with input_example=X[:5].",
    )


def _payload_format_check(inspection: ModelInspection) -> Check:
    signature = inspection.signature
    params = ' Params go in a top-level "params" object.' if signature and signature.params else ""
    if signature is None:
        return Check(
            "Request format",
            CheckStatus.WARN,
            "Unknown without a signature: Azure ML passes input_data on as it comes (a "
            "{columns, index, data} dict becomes a DataFrame, a list an array).",
            "Add a signature so the expected payload is fixed and checked.",
        )
    if signature.input_kind == "columns":
        return Check(
            "Request format",
            CheckStatus.PASS,
            "Column-based: Azure ML expects input_data as a split dict {columns, index, data}; "
            "the MLflow server takes dataframe_split or dataframe_records." + params,
        )
    named = any(f.name for f in signature.inputs)
    shape = "a dict of named tensors" if named else "a (nested) list, one unnamed tensor"
    return Check(
        "Request format",
        CheckStatus.PASS,
        f"Tensor-based: Azure ML expects input_data as {shape}; the MLflow server takes "
        "instances or inputs." + params,
    )


def _batching_check(inspection: ModelInspection) -> Check:
    signature = inspection.signature
    if signature is None:
        return batching_check(None, None)
    shapes = [field.shape for field in signature.outputs]
    return batching_check(signature.input_kind, signature.output_kind, shapes)


def _size_check(inspection: ModelInspection) -> Check:
    size = inspection.total_size_bytes
    cut = " (listing cut short; at least this)" if inspection.artifacts_truncated else ""
    if size > LARGE_MODEL_BYTES:
        return Check(
            "Model size",
            CheckStatus.WARN,
            f"{format_bytes(size)}{cut}: slow to download and load; needs an instance "
            "with memory to spare.",
            "Choose an instance type with at least 4x the model size in memory.",
        )
    return Check("Model size", CheckStatus.PASS, f"{format_bytes(size)}{cut}.")


def format_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
