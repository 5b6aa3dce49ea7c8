"""The MLflow model registry as Deploy Studio reads it: models, versions, aliases, tags, runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from mlflow.tracking import MlflowClient

from deploystudio.config import redact_uri
from deploystudio.errors import (
    DeployStudioError,
    ModelNotFoundError,
    RegistryUnavailableError,
    UnsafePathError,
)
from deploystudio.model_location import checked_artifact_path, contained_location
from deploystudio.model_uri import ModelReference, ModelUriKind, parse_model_uri

# MLflow's REST client retries for minutes by default; a page must answer well before that.
# Its download progress bars would go to the server's log and the CLI's output.
_MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# When filtering by alias (which MLflow search cannot do), scan at most this many pages.
MAX_ALIAS_SCAN_PAGES = 20
# The MLflow search API returns at most this many registered models per call.
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    latest_version: str | None
    aliases: dict[str, str]
    tags: dict[str, str]
    created: datetime | None
    last_updated: datetime | None


@dataclass(frozen=True)
class ModelPage:
    models: list[ModelSummary]
    next_page_token: str | None
    # How many models the registry returned to fill this page (more than len(models) with an
    # alias filter, which is applied here because MLflow's search cannot filter on aliases).
    scanned: int


@dataclass(frozen=True)
class VersionSummary:
    name: str
    version: str
    aliases: tuple[str, ...]
    stage: str | None
    status: str
    source: str
    run_id: str | None
    created: datetime | None
    last_updated: datetime | None
    description: str
    user_id: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    started: datetime | None
    user_id: str | None
    params: dict[str, str]
    metrics: dict[str, float]


def _timestamp(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


def _quote(value: str) -> str:
    """Quote a value for an MLflow filter string, which has no escape character."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise DeployStudioError("Search text cannot contain both ' and \"; remove one of them.")


def build_filter(name_query: str = "", tag: tuple[str, str] | None = None) -> str:
    """The filter string MLflow's `search_registered_models` takes, from the page's fields."""
    clauses = []
    if name_query.strip():
        clauses.append(f"name ILIKE {_quote('%' + name_query.strip() + '%')}")
    if tag is not None:
        key, value = tag
        if "`" in key:
            raise DeployStudioError("A tag key cannot contain a backtick (`).")
        comparator = "LIKE" if value == "" else "="
        clauses.append(f"tags.`{key}` {comparator} {_quote(value or '%')}")
    return " AND ".join(clauses)


def parse_tag_filter(text: str) -> tuple[str, str] | None:
    """`key=value` filters on a tag value; a bare `key` on the tag being present."""
    text = text.strip()
    if not text:
        return None
    key, _, value = text.partition("=")
    if not key.strip():
        raise DeployStudioError("Write a tag filter as key=value, or just key.")
    return key.strip(), value.strip()


class Registry:
    """Read access to one MLflow registry, with errors turned into DeployStudioError."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        for name, value in _MLFLOW_ENV_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=self.registry_uri)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except MlflowException as exc:
            code = exc.error_code
            # A missing alias comes back as INVALID_PARAMETER_VALUE "... not found".
            missing_alias = code == ErrorCode.Name(INVALID_PARAMETER_VALUE) and (
                "not found" in exc.message.lower()
            )
            if code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST) or missing_alias:
                raise ModelNotFoundError(f"{what} does not exist in the registry.") from exc
            if code == ErrorCode.Name(INVALID_PARAMETER_VALUE) or isinstance(exc, RestException):
                raise DeployStudioError(f"The registry refused the request: {exc.message}") from exc
            raise RegistryUnavailableError(self._unavailable_message(exc)) from exc
        except (OSError, ConnectionError) as exc:
            raise RegistryUnavailableError(self._unavailable_message(exc)) from exc

    def _unavailable_message(self, exc: Exception) -> str:
        return (
            f"The MLflow registry at {redact_uri(self.registry_uri)} did not answer "
            f"({type(exc).__name__}). Check that the server is running and that "
            "MLFLOW_TRACKING_URI is right."
        )

    def is_empty(self) -> bool:
        with self._errors("The registry"):
            return len(self.client.search_registered_models(max_results=1)) == 0

    def list_models(
        self,
        name_query: str = "",
        tag: tuple[str, str] | None = None,
        alias: str = "",
        page_size: int = 50,
        page_token: str | None = None,
    ) -> ModelPage:
        """One page of registered models, newest change first, through MLflow's paged search."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise DeployStudioError(f"Page size must be between 1 and {MAX_PAGE_SIZE}.")
        filter_string = build_filter(name_query, tag)
        alias = alias.strip()
        models: list[ModelSummary] = []
        scanned = 0
        token = page_token
        with self._errors("The registry"):
            for _ in range(MAX_ALIAS_SCAN_PAGES if alias else 1):
                page = self.client.search_registered_models(
                    filter_string=filter_string or None,
                    max_results=page_size,
                    order_by=["last_updated_timestamp DESC", "name ASC"],
                    page_token=token,
                )
                scanned += len(page)
                models.extend(
                    summary
                    for summary in map(_model_summary, page)
                    if not alias or alias in summary.aliases
                )
                token = page.token or None
                if token is None or len(models) >= page_size:
                    break
        return ModelPage(models=models, next_page_token=token, scanned=scanned)

    def get_model(self, name: str) -> ModelSummary:
        with self._errors(f"Registered model '{name}'"):
            return _model_summary(self.client.get_registered_model(name))

    def list_versions(self, name: str) -> list[VersionSummary]:
        """All versions of one model, newest first, with their aliases."""
        with self._errors(f"Registered model '{name}'"):
            model = self.client.get_registered_model(name)
            # search_model_versions leaves `aliases` empty; the model carries them.
            aliases_by_version: dict[str, list[str]] = {}
            for alias, version in _aliases(model).items():
                aliases_by_version.setdefault(version, []).append(alias)
            versions = []
            token = None
            while True:
                page = self.client.search_model_versions(
                    filter_string=f"name={_quote(name)}",
                    max_results=1000,
                    order_by=["version_number DESC"],
                    page_token=token,
                )
                versions.extend(page)
                token = page.token
                if not token:
                    break
        return [
            _version_summary(v, tuple(sorted(aliases_by_version.get(str(v.version), []))))
            for v in versions
        ]

    def versions_tagged(self, key: str, prefix: str, limit: int = 1000) -> list[VersionSummary]:
        """Versions of any model whose tag `key` starts with `prefix` (e.g. the wrappers whose
        lineage tag names a model), newest first, at most `limit`; without their aliases.
        `_` and `%` in `prefix` match any character (SQL LIKE): callers check the values."""
        if "`" in key:
            raise DeployStudioError("A tag key cannot contain a backtick (`).")
        with self._errors("The registry"):
            found = self.client.search_model_versions(
                filter_string=f"tags.`{key}` LIKE {_quote(prefix + '%')}",
                max_results=limit,
                order_by=["creation_timestamp DESC"],
            )
        return [_version_summary(v, ()) for v in found]

    def get_version(self, name: str, version: str) -> VersionSummary:
        with self._errors(f"Version {version} of model '{name}'"):
            model_version = self.client.get_model_version(name, version)
            aliases = tuple(
                sorted(
                    a
                    for a, v in _aliases(self.client.get_registered_model(name)).items()
                    if v == str(version)
                )
            )
        return _version_summary(model_version, aliases)

    def resolve_alias(self, name: str, alias: str) -> str:
        """The version number an alias points at."""
        with self._errors(f"Alias '{alias}' of model '{name}'"):
            return str(self.client.get_model_version_by_alias(name, alias).version)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set (or replace) one tag on a registered model version."""
        with self._errors(f"Version {version} of model '{name}'"):
            self.client.set_model_version_tag(name, str(version), key, value)

    def artifact_location(self, reference: ModelReference) -> str:
        """Where a model's artifacts are stored (a file:// path, s3://, mlflow-artifacts:/ ...),
        checked by `contained_location`: every registry URI goes through it before anything
        is listed or downloaded.

        Resolved with this registry's own client: MLflow's models:/ artifact repository reads
        the process-wide registry URI instead, which is wrong when several registries are used.
        """
        with self._errors(f"Model {reference.uri}"):
            if reference.kind is ModelUriKind.REGISTERED_VERSION:
                source = self.client.get_model_version_download_uri(
                    reference.name, reference.version
                )
                return self._source_location(source, reference.uri)
            if reference.kind is ModelUriKind.LOGGED_MODEL:
                model_id = reference.uri.removeprefix("models:/")
                location = self.client.get_logged_model(model_id).artifact_location
                return contained_location(location, "", reference.uri)
            if reference.kind is ModelUriKind.RUN_ARTIFACT:
                return self._run_model_location(reference)
        raise DeployStudioError(f"{reference.uri} has no artifact location in a registry.")

    def _source_location(self, source: str, uri: str) -> str:
        """A version's download URI. MLflow hands a runs:/ source back as it was registered
        (its artifact repository resolves it later, with the process-wide tracking URI): it is
        resolved here, through the same check as a runs:/ URI typed by a user."""
        if source.startswith(("runs:", "models:")):
            try:
                target = parse_model_uri(source)
            except DeployStudioError as exc:
                message = f"{uri} is stored at '{source}', which is refused: {exc}"
                raise UnsafePathError(message) from exc
            if target.kind is ModelUriKind.RUN_ARTIFACT:
                return self._run_model_location(target)
            if target.kind is ModelUriKind.LOGGED_MODEL:
                return self.artifact_location(target)
            raise UnsafePathError(
                f"{uri} is stored at '{source}', another registered version, which is not "
                "followed: register the model from its run's or logged model's artifacts."
            )
        return contained_location(source, "", uri)

    def _run_model_location(self, reference: ModelReference) -> str:
        """runs:/RUN/NAME as MLflow 3 resolves it: the run's own artifacts if NAME is there,
        else the model named NAME logged from that run (MLflow 3 stores those apart). Either
        way the path must stay inside that root (`contained_location`).

        MLflow's RunsArtifactRepository does the same but opens the logged model with the
        process-wide tracking URI, so it fails for any registry but the default one.
        """
        path = reference.uri.removeprefix(f"runs:/{reference.run_id}/")
        path = checked_artifact_path(path, reference.uri)
        run = self.client.get_run(reference.run_id)
        name, _, rest = path.partition("/")
        if any(f.path == name for f in self.client.list_artifacts(reference.run_id)):
            return contained_location(run.info.artifact_uri, path, reference.uri)
        logged = self.client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"name = {_quote(name)}"
        )
        model = next((m for m in logged if m.source_run_id == reference.run_id), None)
        if model is None:
            raise ModelNotFoundError(f"Run {reference.run_id} has no model named '{name}'.")
        return contained_location(model.artifact_location, rest, reference.uri)

    def get_run(self, run_id: str) -> RunSummary | None:
        """The source run's params and metrics, or None when the run is gone or unreadable."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return None
        return RunSummary(
            run_id=run.info.run_id,
            run_name=run.info.run_name,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            started=_timestamp(run.info.start_time),
            user_id=run.info.user_id,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
        )


def _aliases(model) -> dict[str, str]:
    raw = model.aliases or {}
    return {alias: str(version) for alias, version in raw.items()}


def _model_summary(model) -> ModelSummary:
    versions = [int(v.version) for v in (model.latest_versions or [])]
    return ModelSummary(
        name=model.name,
        description=model.description or "",
        latest_version=str(max(versions)) if versions else None,
        aliases=_aliases(model),
        tags=dict(model.tags or {}),
        created=_timestamp(model.creation_timestamp),
        last_updated=_timestamp(model.last_updated_timestamp),
    )


def _version_summary(version, aliases: tuple[str, ...]) -> VersionSummary:
    stage = version.current_stage
    return VersionSummary(
        name=version.name,
        version=str(version.version),
        aliases=aliases,
        stage=stage if stage and stage != "None" else None,
        status=version.status,
        source=version.source,
        run_id=version.run_id or None,
        created=_timestamp(version.creation_timestamp),
        last_updated=_timestamp(version.last_updated_timestamp),
        description=version.description or "",
        user_id=version.user_id or None,
        tags=dict(version.tags or {}),
    )
