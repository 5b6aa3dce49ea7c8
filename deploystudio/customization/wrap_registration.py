"""Register a saved wrapper as a new model version, with lineage tags, all or nothing.

Runs in the app process: it uploads files and writes registry records, and never loads the
model (its code would run here).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow.entities.model_registry.model_version_status import ModelVersionStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.mlflow_tags import MLFLOW_USER

from deploystudio.config import Settings
from deploystudio.deployment.actors import local_user
from deploystudio.errors import (
    DeployStudioError,
    InvalidModelUriError,
    ModelNotFoundError,
    WrapError,
)
from deploystudio.mlflow_scope import using_registry
from deploystudio.model_uri import parse_model_uri, registered_version_uri
from deploystudio.registry import Registry

if TYPE_CHECKING:  # annotations only: registering needs none of the build step's imports
    from deploystudio.customization.wrap_spec import WrapSpec
    from deploystudio.customization.wrapping import WrapPreview

CUSTOMIZE_EXPERIMENT = "deploy-studio-customize"
WRAPPED_FROM_TAG = "deploystudio.wrapped_from"
WRAPPER_KIND_TAG = "deploystudio.wrapper_kind"
WRAPPER_OPTIONS_TAG = "deploystudio.wrapper_options"
MODEL_ARTIFACT_PATH = "model"
# Registry databases created by older MLflow versions hold at most this many characters per tag.
MAX_TAG_VALUE_LENGTH = 5000
REGISTRATION_WAIT_SECONDS = 120


@dataclass(frozen=True)
class RegisteredWrap:
    name: str
    version: str
    model_uri: str  # models:/name/version
    run_id: str


def lineage_tags(source_uri: str, spec: WrapSpec) -> dict[str, str]:
    options = json.dumps(spec.options(), sort_keys=True, separators=(",", ":"))
    if len(options) > MAX_TAG_VALUE_LENGTH:
        raise WrapError(
            f"The wrapper's options take {len(options)} characters, more than a registry tag "
            f"holds ({MAX_TAG_VALUE_LENGTH}): use fewer label mappings or columns."
        )
    return {
        WRAPPED_FROM_TAG: source_uri,
        WRAPPER_KIND_TAG: spec.kind.value,
        WRAPPER_OPTIONS_TAG: options,
    }


def identical_versions(
    registry: Registry, register_as: str, source_uri: str, spec: WrapSpec
) -> list[str]:
    """Versions of `register_as` that already are this wrapper: the same source and the same
    options (their lineage tags say so), newest first. Empty when the model does not exist.

    Registering again would only add a copy, so the page asks first (a second click on
    "Register" used to make an identical version).
    """
    tags = lineage_tags(source_uri, spec)
    try:
        versions = registry.list_versions(register_as.strip())
    except ModelNotFoundError:
        return []
    return [
        v.version for v in versions if all(v.tags.get(key) == value for key, value in tags.items())
    ]


@dataclass
class _Created:
    """What this registration has created so far, to be deleted if a later step fails."""

    run_id: str | None = None
    artifact_uri: str | None = None
    model_name: str | None = None
    version: str | None = None


def register_wrapped_model(
    settings: Settings,
    registry: Registry,
    preview: WrapPreview,
    source_uri: str,
    spec: WrapSpec,
    register_as: str,
    progress: Callable[[str], None] = lambda message: None,
    registered_by: str | None = None,
) -> RegisteredWrap:
    """Log the saved wrapper as a run's artifacts and register it as a new version of
    `register_as` (created if needed), with lineage tags. On failure, delete whatever was
    created and raise WrapError.

    `registered_by` (the signed-in user; the OS user when None, as the CLI signs) becomes the
    run's user, which is who the registry shows as having registered the version: MLflow's
    client otherwise records "unknown" for a run it did not start itself."""
    name = register_as.strip()
    if not name:
        raise WrapError("Give the registered model a name.")
    if not (preview.saved_path / "MLmodel").is_file():
        raise WrapError(
            f"The saved wrapper is gone ({preview.saved_path} has no MLmodel): build it again."
        )
    tags = lineage_tags(source_uri, spec)
    client = registry.client
    created = _Created()
    try:
        with using_registry(settings.tracking_uri, settings.registry_uri):
            experiment_id, experiment_name = _experiment(settings, registry, source_uri)
            progress(f"Creating a run in experiment '{experiment_name}'")
            run = client.create_run(
                experiment_id,
                run_name=f"wrap-{spec.kind.value}-{name}",
                tags={**tags, MLFLOW_USER: registered_by or local_user()},
            )
            created.run_id, created.artifact_uri = run.info.run_id, run.info.artifact_uri
            files = [p for p in preview.saved_path.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            progress(f"Uploading the wrapped model ({len(files)} files, {size / 1024:.0f} KiB)")
            client.log_artifacts(run.info.run_id, str(preview.saved_path), MODEL_ARTIFACT_PATH)
            progress(f"Registering it as a new version of '{name}'")
            if not _model_exists(client, name):
                client.create_registered_model(
                    name, description=f"Wrapped models built from {source_uri}."
                )
                created.model_name = name
            version = client.create_model_version(
                name,
                source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT_PATH}",
                run_id=run.info.run_id,
                tags=tags,
                description=f"{spec.kind.value} wrapper of {source_uri}",
            )
            created.version = str(version.version)
            _wait_until_ready(client, name, created.version)
            client.set_terminated(run.info.run_id, "FINISHED")
    except (MlflowException, OSError, DeployStudioError) as exc:
        _undo(registry, name, created)
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise WrapError(
            f"Registering the wrapper as '{name}' failed, and nothing was registered: {message}"
        ) from exc
    progress(f"Registered {registered_version_uri(name, created.version)}")
    return RegisteredWrap(
        name=name,
        version=created.version,
        model_uri=registered_version_uri(name, created.version),
        run_id=created.run_id,
    )


def _experiment(settings: Settings, registry: Registry, source_uri: str) -> tuple[str, str]:
    """The source version's experiment when it is known and active, else the customize one."""
    client = registry.client
    with contextlib.suppress(InvalidModelUriError, DeployStudioError, MlflowException):
        reference = parse_model_uri(source_uri)
        if reference.is_registered:
            number = reference.version or registry.resolve_alias(reference.name, reference.alias)
            run_id = registry.get_version(reference.name, number).run_id
            run = registry.get_run(run_id) if run_id else None
            if run is not None:
                experiment = client.get_experiment(run.experiment_id)
                if experiment.lifecycle_stage == "active":
                    return experiment.experiment_id, experiment.name
    experiment = client.get_experiment_by_name(CUSTOMIZE_EXPERIMENT)
    if experiment is not None and experiment.lifecycle_stage == "active":
        return experiment.experiment_id, experiment.name
    # In the embedded store, artifacts go under the data folder rather than ./mlruns.
    location = settings.artifact_root.as_uri() if settings.is_embedded_registry else None
    try:
        return client.create_experiment(CUSTOMIZE_EXPERIMENT, location), CUSTOMIZE_EXPERIMENT
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    return client.get_experiment_by_name(CUSTOMIZE_EXPERIMENT).experiment_id, CUSTOMIZE_EXPERIMENT


def _model_exists(client, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _wait_until_ready(client, name: str, version: str) -> None:
    """Remote registries copy the files asynchronously; a version is usable once READY."""
    deadline = time.monotonic() + REGISTRATION_WAIT_SECONDS
    while True:
        status = client.get_model_version(name, version).status
        if status == ModelVersionStatus.to_string(ModelVersionStatus.READY):
            return
        if status == ModelVersionStatus.to_string(ModelVersionStatus.FAILED_REGISTRATION):
            raise WrapError(f"The registry could not register version {version} of '{name}'.")
        if time.monotonic() > deadline:
            raise WrapError(
                f"Version {version} of '{name}' was still {status} after "
                f"{REGISTRATION_WAIT_SECONDS} s."
            )
        time.sleep(1)


def _undo(registry: Registry, name: str, created: _Created) -> None:
    """Delete what was created, newest first; each step on its own, so one failure does not
    keep the others from running."""
    client = registry.client
    if created.version is not None:
        with contextlib.suppress(MlflowException):
            client.delete_model_version(name, created.version)
    if created.model_name is not None:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(created.model_name)
    if created.run_id is not None:
        with contextlib.suppress(MlflowException, OSError):
            repository = get_artifact_repository(created.artifact_uri, registry.tracking_uri)
            repository.delete_artifacts()
        with contextlib.suppress(MlflowException):
            client.set_terminated(created.run_id, "FAILED")
            client.delete_run(created.run_id)
