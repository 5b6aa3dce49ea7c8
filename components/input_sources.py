"""The four input tabs over one model (example, form, upload, JSON), as the Predict page and
the Endpoints page's invoke panel show them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from mlflow.models import ModelSignature

from components.payload_editor import (
    SOURCE_EXAMPLE,
    SOURCE_FORM,
    SOURCE_JSON,
    SOURCE_UPLOAD,
    SOURCES,
    InputBuilder,
    default_source,
    render_example_source,
)
from components.payload_form import render_form_source
from components.payload_json import default_request_text, render_json_source
from components.payload_upload import render_upload_source
from deploystudio.inspection import ModelInspection


def render_input_sources(
    inspection: ModelInspection,
    signature: ModelSignature | None,
    model_path: Path,
    key: str,
) -> tuple[str, InputBuilder | None]:
    """Draw the tabs under widget-key prefix `key`; return the chosen tab's name and the
    function that builds its input (None while it has nothing to send)."""
    example, params = inspection.input_example, inspection.input_example_params
    first = default_source(inspection.signature, example)
    tab_key = f"{key}_source"
    tabs = st.tabs(list(SOURCES), key=tab_key, on_change="rerun", default=first)
    builders: dict[str, InputBuilder | None] = {}
    with tabs[0]:
        builders[SOURCE_EXAMPLE] = render_example_source(
            example, params, inspection.input_example_error
        )
    with tabs[1]:
        builders[SOURCE_FORM] = render_form_source(inspection.signature, signature, example, key)
    with tabs[2]:
        builders[SOURCE_UPLOAD] = render_upload_source(
            inspection.signature, signature, str(model_path), key
        )
    with tabs[3]:
        builders[SOURCE_JSON] = render_json_source(
            default_request_text(inspection.signature, example, params), signature, key
        )
    chosen = st.session_state.get(tab_key) or first
    return chosen, builders.get(chosen)
