"""Which registry Browse and Inspect read: the MLflow registry, or the model registry of the
Azure ML workspace the Azure settings name. Kept in the address (?source=azure), so a link to
a version says where it is registered. Pages get a source key for the cached listings
(`services.model_page(source, ...)`) and reach the registry only through its interface."""

from __future__ import annotations

import streamlit as st

from components import services
from components.azure_settings import pick_here_or_workspace, settings_workspace

AZURE = "azure"
PICKER_KEY = "source"  # in the address
WIDGET_KEY = "registry_source"


def chosen_source() -> str | None:
    """The source key the address asks for without drawing anything (Inspect's links carry
    it): the Azure workspace's, the MLflow registry's, or None when ?source=azure names no
    workspace the settings know."""
    if st.query_params.get(PICKER_KEY) != AZURE:
        return services.get_settings().registry_uri
    workspace = settings_workspace()
    return services.azure_source(workspace) if workspace is not None else None


def render_source_picker() -> tuple[str, bool]:
    """The picker; returns the source key and whether it is the Azure ML workspace."""
    workspace = pick_here_or_workspace("Registry", "MLflow registry", PICKER_KEY, WIDGET_KEY)
    if workspace is not None:
        return services.azure_source(workspace), True
    return services.get_settings().registry_uri, False
