"""One interface for a model registry, whichever keeps the versions: `ModelRegistry`.

Two implementations: `MlflowModelRegistry` (an MLflow tracking server's registry, as
`registry.Registry` reads it) and `azure_registry.AzureModelRegistry` (an Azure ML workspace's
model registry through azure-ai-ml). Browse and Inspect take either: they list, read and
download versions through these verbs only. A downloaded version is an MLflow model folder in
the data folder's cache (`prediction.cached_download`, the same rules for both), inspected
exactly like a local one (`inspect_version`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol, runtime_checkable

from deploystudio.config import Settings
from deploystudio.inspection import ModelInspection, inspect_model
from deploystudio.prediction import local_model_path
from deploystudio.registry import ModelPage, ModelSummary, Registry, VersionSummary

MLFLOW = "mlflow"
AZURE = "azure"


@runtime_checkable
class ModelRegistry(Protocol):
    """What a page needs of a registry. Errors are DeployStudioError with what to do."""

    # Which kind of registry (MLFLOW or AZURE) and what to call it on a page.
    kind: str
    title: str

    def list_models(
        self,
        name_query: str = "",
        tag: tuple[str, str] | None = None,
        alias: str = "",
        page_size: int = 50,
        page_token: str | None = None,
    ) -> ModelPage:
        """One page of models whose name contains `name_query`, with the tag (key, value; value
        "" for any) and alias given; `next_page_token` None on the last page."""
        ...

    def get_model(self, name: str) -> ModelSummary:
        """One model; ModelNotFound-like DeployStudioError when there is none."""
        ...

    def list_versions(self, name: str) -> list[VersionSummary]:
        """All versions of one model, newest first."""
        ...

    def get_version(self, name: str, version: str) -> VersionSummary: ...

    def local_model_path(self, name: str, version: str) -> Path:
        """The version's MLflow model folder, downloaded once into the cache. Raises
        InvalidModelError when the version is not an MLflow model."""
        ...

    def model_uri(self, name: str, version: str) -> str:
        """How the rest of the studio names the version (models:/NAME/V, azureml:NAME:V)."""
        ...


class MlflowModelRegistry:
    """The MLflow registry (`registry.Registry`) under the registry interface."""

    kind = MLFLOW
    title = "MLflow registry"

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings

    def list_models(
        self,
        name_query: str = "",
        tag: tuple[str, str] | None = None,
        alias: str = "",
        page_size: int = 50,
        page_token: str | None = None,
    ) -> ModelPage:
        return self.registry.list_models(name_query, tag, alias, page_size, page_token)

    def get_model(self, name: str) -> ModelSummary:
        return self.registry.get_model(name)

    def list_versions(self, name: str) -> list[VersionSummary]:
        return self.registry.list_versions(name)

    def get_version(self, name: str, version: str) -> VersionSummary:
        return self.registry.get_version(name, version)

    def local_model_path(self, name: str, version: str) -> Path:
        return local_model_path(self.model_uri(name, version), self.settings, self.registry)

    def model_uri(self, name: str, version: str) -> str:
        return f"models:/{name}/{version}"


def inspect_version(
    registry: ModelRegistry, name: str, version: str, settings: Settings
) -> ModelInspection:
    """A registered version's report, from any registry: the MLflow registry's as Inspect always
    read it; another registry's version is downloaded into the cache, then inspected as the
    local MLflow model folder it is (only that folder may be read), with its registry's record."""
    if isinstance(registry, MlflowModelRegistry):
        return inspect_model(
            registry.model_uri(name, version),
            settings,
            registry.registry,
            allowed_local_roots=settings.local_model_roots,
        )
    record = registry.get_version(name, version)
    folder = registry.local_model_path(name, version)
    inspection = inspect_model(str(folder), settings, None, allowed_local_roots=(folder,))
    return dataclasses.replace(inspection, version=record)
