"""Where a preview's input comes from: the logged example, a form from the signature, an
uploaded file, or a JSON body. Each source renders its widgets and returns a function that
builds the `ModelInput` when the user asks for a prediction (None when it has nothing yet).

This module holds the sources' names, the widget-key scheme and the example source; the form,
upload and JSON sources live in `payload_form`, `payload_upload` and `payload_json`.

Widget keys start with a per-model prefix, so what the user typed survives reruns and errors,
and one model's input never shows up in another's editor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from components.model_details import render_input_example
from deploystudio.inspection import SignatureInfo
from deploystudio.payload_formats import ModelInput

InputBuilder = Callable[[], ModelInput]

SOURCE_EXAMPLE = "Input example"
SOURCE_FORM = "Form"
SOURCE_UPLOAD = "Upload a file"
SOURCE_JSON = "JSON"
SOURCES = (SOURCE_EXAMPLE, SOURCE_FORM, SOURCE_UPLOAD, SOURCE_JSON)


def editor_key(resolved_uri: str) -> str:
    """The prefix of one model's widget keys (tests use it to reach the widgets)."""
    return "predict_" + hashlib.sha256(resolved_uri.encode()).hexdigest()[:12]


def source_key(resolved_uri: str) -> str:
    """The session-state key of the selected input tab."""
    return f"{editor_key(resolved_uri)}_source"


def default_source(info: SignatureInfo | None, example: object) -> str:
    if example is not None:
        return SOURCE_EXAMPLE
    if info is not None and info.input_kind == "columns":
        return SOURCE_FORM
    return SOURCE_JSON


def render_example_source(
    example: object, params: dict | None, error: str | None
) -> InputBuilder | None:
    render_input_example(example, params, error)
    if example is None:
        return None
    if not isinstance(example, pd.DataFrame | np.ndarray | dict):
        st.info("This kind of example cannot be sent from here: paste it in the JSON tab.")
        return None
    return lambda: ModelInput(example, dict(params) if params else None)
