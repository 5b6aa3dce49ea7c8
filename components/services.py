"""Cached access to the domain for pages: one client per registry, short-lived listings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature

from components.access import current_user
from components.refreshing import Refreshing
from deploystudio.config import Settings, load_settings
from deploystudio.deployment.base import DeploymentTarget
from deploystudio.deployment.endpoint_supervisor import LocalEndpoints, start_local_endpoints
from deploystudio.environments.choice import Chosen
from deploystudio.errors import InvalidModelError
from deploystudio.inspection import ModelInspection, inspect_model
from deploystudio.overview import RegistryFacts, registry_facts, tag_suggestions
from deploystudio.prediction import local_model_path
from deploystudio.registry import ModelPage, ModelSummary, Registry, VersionSummary
from deploystudio.worker.process import PredictionWorker
from deploystudio.worker.sandbox import Access

LISTING_TTL_SECONDS = 30
log = logging.getLogger(__name__)


def get_settings() -> Settings:
    # Not cached: reading env vars and secrets.toml is cheap, and a cached copy would go stale.
    return load_settings()


@st.cache_resource(show_spinner=False)
def get_registry(tracking_uri: str, registry_uri: str) -> Registry:
    return Registry(tracking_uri, registry_uri)


def registry() -> Registry:
    settings = get_settings()
    return get_registry(settings.tracking_uri, settings.registry_uri)


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def model_page(
    registry_uri: str,
    name_query: str,
    tag: tuple[str, str] | None,
    alias: str,
    page_size: int,
    page_token: str | None,
) -> ModelPage:
    return registry().list_models(name_query, tag, alias, page_size, page_token)


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def model_versions(registry_uri: str, name: str) -> list[VersionSummary]:
    return registry().list_versions(name)


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def model_summary(registry_uri: str, name: str) -> ModelSummary:
    return registry().get_model(name)


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def inspection(registry_uri: str, model_uri: str) -> ModelInspection:
    settings = get_settings()
    return inspect_model(
        model_uri, settings, registry(), allowed_local_roots=settings.local_model_roots
    )


@st.cache_data(ttl=LISTING_TTL_SECONDS, show_spinner=False)
def registry_overview(registry_uri: str) -> RegistryFacts:
    """The registry at a glance (models, versions, aliases, tags) for the overview and the tag
    filter's suggestions."""
    return registry_facts(registry())


@dataclass(frozen=True)
class FilterHints:
    """The tag keys (with their values) and aliases in the registry, most used first."""

    tags: dict[str, list[str]]
    aliases: list[str]


@st.cache_resource(show_spinner=False)
def _filter_hints(registry_uri: str) -> Refreshing[FilterHints]:
    # Taken here, in the page's thread: the background read then touches no Streamlit API.
    client = registry()

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
    for cached in (
        model_page,
        model_versions,
        model_summary,
        inspection,
        registry_overview,
        _filter_hints,
    ):
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


def endpoint_target() -> DeploymentTarget:
    """The target the endpoint panels manage, reached only through the interface (a panel
    asks `supports(...)` before it shows what only some targets have)."""
    return local_endpoints().target


def current_actor() -> str:
    """Who signs audit entries and operations: the signed-in user when there is one, else the
    local (OS) user."""
    return current_user().name
