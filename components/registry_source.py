"""Which registry Browse and Inspect read: the MLflow registry, or the model registry of the
Azure ML workspace the Azure settings name. Kept in the address (?source=azure), so a link to
a version says where it is registered. Pages get a source key for the cached listings
(`services.model_page(source, ...)`) and reach the registry only through its interface."""

from __future__ import annotations

import streamlit as st

from components import services
from components.azure_settings import settings_workspace

MLFLOW = "mlflow"
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
    workspace = settings_workspace()
    options = [MLFLOW] if workspace is None else [MLFLOW, AZURE]
    asked = st.query_params.get(PICKER_KEY, MLFLOW)
    labels = {
        MLFLOW: "MLflow registry",
        AZURE: f"Azure ML: {workspace.workspace_name}" if workspace else "Azure ML",
    }
    choice = st.radio(
        "Registry",
        options,
        format_func=labels.__getitem__,
        # The address says which on arrival (a link, a reload); the widget keeps the choice
        # after. Not bound to the address: a bound radio keeps its label there, not the option.
        index=options.index(asked) if asked in options else 0,
        horizontal=True,
        key=WIDGET_KEY,
    )
    if choice == options[0]:
        st.query_params.pop(PICKER_KEY, None)
    else:
        st.query_params[PICKER_KEY] = choice
    if choice == AZURE and workspace is not None:
        return services.azure_source(workspace), True
    return services.get_settings().registry_uri, False
