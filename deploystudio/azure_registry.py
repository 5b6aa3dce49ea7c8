"""An Azure ML workspace's model registry under the registry interface (`ModelRegistry`),
through azure-ai-ml: `models.list` (the models, then one model's versions), `models.get` and
`models.download` (the version's files from the workspace's datastore).

Azure ML keeps the versions, their descriptions and tags, and which of them are MLflow models
(`type` mlflow_model); an MLflow version is downloaded into the data folder's cache by
`prediction.cached_download` (the same rules as an MLflow registry's download) and is then an
ordinary local MLflow model folder. Azure ML has no aliases (its `latest` label is a version's
position, not a name one sets), so an alias filter finds nothing and says why.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from deploystudio.config import Settings
from deploystudio.deployment.azure.errors import azure_errors
from deploystudio.deployment.azure.workspace import AzureWorkspace, ml_client
from deploystudio.errors import DeployStudioError, InvalidModelError, ModelNotFoundError
from deploystudio.model_registry import AZURE
from deploystudio.prediction import cached_download
from deploystudio.registry import MAX_PAGE_SIZE, ModelPage, ModelSummary, VersionSummary

MLFLOW_MODEL = "mlflow_model"


class AzureModelRegistry:
    """The model registry of one Azure ML workspace. Builds no connection until first used."""

    kind = AZURE

    def __init__(
        self,
        settings: Settings,
        workspace: AzureWorkspace,
        credential: Any = None,
        transport: Any = None,
    ) -> None:
        self.settings = settings
        self.workspace = workspace
        self.title = f"Azure ML workspace {workspace.workspace_name}"
        self._credential = credential
        self._transport = transport
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = ml_client(self.workspace, self._credential, self._transport)
        return self._client

    def list_models(
        self,
        name_query: str = "",
        tag: tuple[str, str] | None = None,
        alias: str = "",
        page_size: int = 50,
        page_token: str | None = None,
    ) -> ModelPage:
        """The workspace's models whose name contains `name_query` (any case), with the tag;
        by name. azure-ai-ml lists them all (its pager follows the service's pages); this
        hands them out `page_size` at a time, the token being the next one's offset."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise DeployStudioError(f"Page size must be between 1 and {MAX_PAGE_SIZE}.")
        if alias.strip():
            raise DeployStudioError(
                "Azure ML models have no aliases: clear the Alias filter, or filter by a tag."
            )
        with azure_errors(f"Listing the models of {self.title}"):
            found = [_model_summary(m) for m in self.client.models.list()]
        query = name_query.strip().lower()
        found = sorted(
            (m for m in found if query in m.name.lower() and _has_tag(m.tags, tag)),
            key=lambda m: m.name,
        )
        start = int(page_token) if page_token and page_token.isdigit() else 0
        end = start + page_size
        return ModelPage(
            models=found[start:end],
            next_page_token=str(end) if end < len(found) else None,
            scanned=len(found),
        )

    def get_model(self, name: str) -> ModelSummary:
        versions = self.list_versions(name)
        latest = versions[0]
        return ModelSummary(
            name=name,
            description=latest.description,
            latest_version=latest.version,
            aliases={},
            tags=latest.tags,
            created=versions[-1].created,
            last_updated=latest.last_updated,
        )

    def list_versions(self, name: str) -> list[VersionSummary]:
        with azure_errors(f"Listing the versions of model {name!r} in {self.title}"):
            versions = [_version_summary(v) for v in self.client.models.list(name=name)]
        if not versions:
            raise ModelNotFoundError(f"{self.title} has no model named {name!r}.")
        return sorted(versions, key=lambda v: _number(v.version), reverse=True)

    def get_version(self, name: str, version: str) -> VersionSummary:
        return _version_summary(self._get(name, version))

    def model_uri(self, name: str, version: str) -> str:
        return f"azureml:{name}:{version}"

    def local_model_path(self, name: str, version: str) -> Path:
        """The version's MLflow model folder, downloaded once into the cache through
        `models.download` (datastore and blob storage)."""
        uri = self.model_uri(name, version)
        model = self._get(name, version)
        if model.type != MLFLOW_MODEL:
            raise InvalidModelError(
                f"{uri} in {self.title} is a {model.type} model, not an MLflow model: only "
                "MLflow models can be inspected, previewed and deployed here. Register the model "
                "with type mlflow_model (its folder holds an MLmodel file)."
            )

        def download(staging: Path) -> Path:
            with azure_errors(f"Downloading {uri} from {self.title}"):
                self.client.models.download(name, version, download_path=str(staging))
            return _model_folder(staging, uri)

        # One cache entry per version of this workspace's model: versions are immutable.
        key = f"{self.workspace.arm_id}/models/{name}/versions/{version}"
        return cached_download(key, uri, self.settings, download)

    def _get(self, name: str, version: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            with azure_errors(f"Reading {self.model_uri(name, version)} in {self.title}"):
                return self.client.models.get(name=name, version=version)
        except DeployStudioError as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                raise ModelNotFoundError(
                    f"{self.title} has no version {version} of model {name!r}."
                ) from exc
            raise


def _model_folder(staging: Path, uri: str) -> Path:
    """Where `models.download` put the MLflow model: the folder holding MLmodel (it writes
    NAME/ or NAME/LAST_PATH_PART/ under the download path)."""
    found = sorted(staging.rglob("MLmodel"), key=lambda p: len(p.parts))
    if not found:
        raise InvalidModelError(
            f"{uri} was downloaded but holds no MLmodel file, so it is not an MLflow model."
        )
    return found[0].parent


def _has_tag(tags: dict[str, str], tag: tuple[str, str] | None) -> bool:
    if tag is None:
        return True
    key, value = tag
    return key in tags and (not value or tags[key] == value)


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _when(context: Any, name: str) -> datetime | None:
    value = getattr(context, name, None) if context is not None else None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _model_summary(model: Any) -> ModelSummary:
    context = getattr(model, "creation_context", None)
    return ModelSummary(
        name=model.name,
        description=model.description or "",
        latest_version=getattr(model, "latest_version", None),
        aliases={},
        tags=dict(model.tags or {}),
        created=_when(context, "created_at"),
        last_updated=_when(context, "last_modified_at"),
    )


def _version_summary(model: Any) -> VersionSummary:
    context = getattr(model, "creation_context", None)
    return VersionSummary(
        name=model.name,
        version=str(model.version),
        aliases=(),
        stage=None,
        status="READY" if model.type == MLFLOW_MODEL else f"{model.type} (not MLflow)",
        source=model.path or "",
        run_id=None,
        created=_when(context, "created_at"),
        last_updated=_when(context, "last_modified_at"),
        description=model.description or "",
        user_id=getattr(context, "created_by", None),
        tags=dict(model.tags or {}),
    )
