"""Cached access to the domain for pages: one client per registry, short-lived listings."""

from __future__ import annotations

import streamlit as st

from deploystudio.config import Settings, load_settings
from deploystudio.inspection import ModelInspection, inspect_model
from deploystudio.registry import ModelPage, ModelSummary, Registry, VersionSummary

LISTING_TTL_SECONDS = 30


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


def refresh_registry_listings() -> None:
    """Forget cached listings so the next read goes to the registry."""
    for cached in (model_page, model_versions, model_summary, inspection):
        cached.clear()
