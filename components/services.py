"""Cached access to the domain for pages: one client per registry, short-lived listings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature

from components.access import current_user
from components.refreshing import Refreshing
from deploystudio.azure_registry import AzureModelRegistry
from deploystudio.config import Settings, load_settings
from deploystudio.deployment.azure import fake_transport_hook
from deploystudio.deployment.azure.online import AzureTarget
from deploystudio.deployment.azure.records import ONLINE
from deploystudio.deployment.azure.workspace import AzureWorkspace
from deploystudio.deployment.base import DeploymentTarget
from deploystudio.deployment.endpoint_supervisor import LocalEndpoints, start_local_endpoints
from deploystudio.environments.choice import Chosen
from deploystudio.errors import InvalidModelError
from deploystudio.inspection import ModelInspection, inspect_model
from deploystudio.model_registry import MlflowModelRegistry, ModelRegistry, inspect_version
from deploystudio.overview import RegistryFacts, registry_facts, tag_suggestions
from deploystudio.prediction import local_model_path
from deploystudio.registry import ModelPage, ModelSummary, Registry, VersionSummary
from deploystudio.worker.process import PredictionWorker
from deploystudio.worker.sandbox import Access

LISTING_TTL_SECONDS = 30
log = logging.getLogger(__name__)
# The session-state key holding the Azure ML workspace the Endpoints page's target picker chose;
# absent or None: the local target.
ENDPOINT_WORKSPACE_KEY = "endpoint_target_workspace"
AZURE_RESUME_TITLE = "Resume Azure operations left running by the last app run"
# Test seam: None in the app; an AppTest (which runs pages in its own process) may set it to a
# function returning the (credential, transport) pair for a workspace, e.g. the fake ARM
# transport. Browser tests use fake_transport_hook instead (another process, see there).
connection_for_tests: Callable[[AzureWorkspace], tuple[Any, Any]] | None = None


def get_settings() -> Settings:
    # Not cached: reading env vars and secrets.toml is cheap, and a cached copy would go stale.
    return load_settings()


@st.cache_resource(show_spinner=False)
def get_registry(tracking_uri: str, registry_uri: str) -> Registry:
    return Registry(tracking_uri, registry_uri)


def registry() -> Registry:
    settings = get_settings()
    return get_registry(settings.tracking_uri, settings.registry_uri)


# A model source as the cached listings are keyed: the MLflow registry's URI, or this prefix and
# an Azure ML workspace's ARM id (an Azure ML workspace's model registry).
AZURE_SOURCE_PREFIX = "azureml:"


def azure_source(workspace: AzureWorkspace) -> str:
    return AZURE_SOURCE_PREFIX + workspace.arm_id


def _azure_connection(workspace: AzureWorkspace) -> tuple[Any, Any]:
    """(credential, transport) for a workspace: (None, None) in the app (DefaultAzureCredential
    and the network); a test's, through the seam or the test-only hook."""
    factory = connection_for_tests or fake_transport_hook.connection_factory()
    return factory(workspace) if factory is not None else (None, None)


@st.cache_resource(show_spinner=False)
def _azure_model_registry(
    home: str, subscription_id: str, resource_group: str, workspace_name: str, seam: int
) -> AzureModelRegistry:
    workspace = AzureWorkspace(subscription_id, resource_group, workspace_name)
    credential, transport = _azure_connection(workspace)
    return AzureModelRegistry(get_settings(), workspace, credential, transport)


def model_registry(source: str) -> ModelRegistry:
    """The registry behind a source key (see AZURE_SOURCE_PREFIX), through its interface."""
    if not source.startswith(AZURE_SOURCE_PREFIX):
        return MlflowModelRegistry(registry(), get_settings())
    workspace = AzureWorkspace.from_arm_id(source.removeprefix(AZURE_SOURCE_PREFIX))
    return _azure_model_registry(
        str(get_settings().home),
        workspace.subscription_id,
        workspace.resource_group,
        workspace.workspace_name,
        id(connection_for_tests) if connection_for_tests is not None else 0,
    )


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def model_page(
    registry_uri: str,
    name_query: str,
    tag: tuple[str, str] | None,
    alias: str,
    page_size: int,
    page_token: str | None,
) -> ModelPage:
    """`registry_uri`: the source (the MLflow registry's URI, or `azure_source(...)`)."""
    return model_registry(registry_uri).list_models(name_query, tag, alias, page_size, page_token)


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def model_versions(registry_uri: str, name: str) -> list[VersionSummary]:
    return model_registry(registry_uri).list_versions(name)


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def model_summary(registry_uri: str, name: str) -> ModelSummary:
    return model_registry(registry_uri).get_model(name)


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def version_inspection(source: str, name: str, version: str) -> ModelInspection:
    """A registered version's report from any source; another registry's version is
    downloaded into the cache first."""
    return inspect_version(model_registry(source), name, version, get_settings())


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def inspection(registry_uri: str, model_uri: str) -> ModelInspection:
    settings = get_settings()
    return inspect_model(
        model_uri, settings, registry(), allowed_local_roots=settings.local_model_roots
    )


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def registry_overview(registry_uri: str) -> RegistryFacts:
    """The registry at a glance (models, versions, aliases, tags) for the overview and the tag
    filter's suggestions. `registry_uri`: the source, as for model_page."""
    return registry_facts(model_registry(registry_uri))


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def versions_tagged(registry_uri: str, key: str, prefix: str) -> list[VersionSummary]:
    """Versions whose tag `key` starts with `prefix` (a version's wrappers, for its lineage)."""
    return registry().versions_tagged(key, prefix)


@dataclass(frozen=True)
class FilterHints:
    """The tag keys (with their values) and aliases in the registry, most used first."""

    tags: dict[str, list[str]]
    aliases: list[str]


@st.cache_resource(show_spinner=False)
def _filter_hints(registry_uri: str) -> Refreshing[FilterHints]:
    # Taken here, in the page's thread: the background read then touches no Streamlit API.
    client = model_registry(registry_uri)

    def read() -> FilterHints:
        facts = registry_facts(client)
        aliases = [alias for alias, _ in facts.alias_counts().most_common()]
        return FilterHints(tag_suggestions(facts.models), aliases)

    return Refreshing(read, LISTING_TTL_SECONDS)


def filter_hints(registry_uri: str) -> FilterHints | None:
    """Browse's filter help, at once: the last read (None before the first has ended), read
    again in the background when older than the listings' TTL."""
    return _filter_hints(registry_uri).get()


def refresh_registry_listings() -> None:
    """Forget cached listings so the next read goes to the registry."""
    listings = (
        model_page,
        model_versions,
        model_summary,
        inspection,
        version_inspection,
        registry_overview,
        _filter_hints,
    )
    for cached in (*listings, versions_tagged):
        cached.clear()


@st.cache_resource(show_spinner=False)
def prediction_worker() -> PredictionWorker:
    """One worker process for the whole server: sessions take turns (it predicts one at a time)."""
    return PredictionWorker(get_settings().home / "logs" / "prediction-worker.log")


@st.cache_resource(show_spinner=False)
def environment_worker(key: str, root: str, python: str) -> PredictionWorker:
    """One worker per model environment (by its key), kept like the app's own: a model's next
    preview finds it loaded."""
    return PredictionWorker(
        get_settings().home / "logs" / f"prediction-worker-{key}.log",
        access=Access.of(read=[Path(root)]),
        python=Path(python),
    )


def worker_for(chosen: Chosen) -> PredictionWorker:
    environment = chosen.environment
    if environment is None:
        return prediction_worker()
    return environment_worker(environment.key, str(environment.root), str(environment.python))


@st.cache_resource(show_spinner=False, validate=lambda path: (path / "MLmodel").is_file())
def model_path(registry_uri: str, resolved_uri: str) -> Path:
    """The model's local folder. `resolved_uri` names a fixed version (or a folder), never an
    alias, so the answer never goes stale; the download itself is cached on disk."""
    settings = get_settings()
    return local_model_path(
        resolved_uri, settings, registry(), allowed_local_roots=settings.local_model_roots
    )


@st.cache_resource(show_spinner=False)
def model_signature(path: str) -> ModelSignature | None:
    """The signature as MLflow reads it: payloads are parsed and cast against its schemas."""
    try:
        return Model.load(str(Path(path) / "MLmodel")).signature
    except (MlflowException, OSError, ValueError) as exc:
        raise InvalidModelError(f"The MLmodel file in {path} cannot be read: {exc}") from exc


def customize_work_dir() -> Path:
    """Where wrapped models are saved before they are registered, and scripts are validated."""
    path = get_settings().home / "work" / "customize"
    path.mkdir(parents=True, exist_ok=True)
    return path


@st.cache_resource(show_spinner=False, on_release=lambda endpoints: endpoints.stop_repairing.set())
def _local_endpoints(home: str) -> LocalEndpoints:
    # Once per server process (the cache): the target, its start-up reconcile and repair loop.
    return start_local_endpoints(get_settings(), registry())


def local_endpoints() -> LocalEndpoints:
    return _local_endpoints(str(get_settings().home))


def azure_subject(endpoint: str, kind: str = ONLINE) -> str:
    """The runner's subject for an Azure endpoint: one operation on it at a time. `kind` is
    azure records' ONLINE or BATCH: an online and a batch endpoint may share a name, and work on
    one must not hold up (or be mistaken for) work on the other."""
    return f"Azure {kind} endpoint {endpoint}"


@st.cache_resource(show_spinner=False)
def _azure_target(
    home: str, subscription_id: str, resource_group: str, workspace_name: str, seam: int
) -> AzureTarget:
    # One AzureTarget per workspace for the whole server, on the local endpoints' operation
    # runner (Azure and local work show the same way). When a target is first built in a server
    # process, the operations a previous run left pending are resumed (polled, never re-sent).
    workspace = AzureWorkspace(subscription_id, resource_group, workspace_name)
    credential, transport = _azure_connection(workspace)
    target = AzureTarget(get_settings(), workspace, credential, transport, registry=registry())
    if target.records.pending() or target.batch_records.pending():
        local_endpoints().operations.submit(
            f"Azure workspace {workspace_name}",
            AZURE_RESUME_TITLE,
            lambda progress: target.resume_pending(progress),
            actor=current_actor(),
        )
    return target


def azure_target(workspace: AzureWorkspace) -> AzureTarget:
    """Builds no network connection by itself: MLClient calls Azure only when used."""
    return _azure_target(
        str(get_settings().home),
        workspace.subscription_id,
        workspace.resource_group,
        workspace.workspace_name,
        # Part of the cache key so a target built for a test is never reused without it.
        id(connection_for_tests) if connection_for_tests is not None else 0,
    )


def endpoint_target() -> DeploymentTarget:
    """The target the endpoint panels manage (the Endpoints page's picker chooses it: local, or
    an Azure ML workspace), reached only through the interface (a panel asks `supports(...)`
    before it shows what only some targets have)."""
    workspace = st.session_state.get(ENDPOINT_WORKSPACE_KEY)
    if isinstance(workspace, AzureWorkspace):
        return azure_target(workspace)
    return local_endpoints().target


def current_actor() -> str:
    """Who signs audit entries and operations: the signed-in user when there is one, else the
    local (OS) user."""
    return current_user().name
