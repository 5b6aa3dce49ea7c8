"""The JSON input of a preview: a request body in any of the formats, edited as text."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st
from mlflow.models import ModelSignature

from components.payload_form import form_frame
from deploystudio.errors import PayloadError
from deploystudio.inspection import SignatureInfo
from deploystudio.payload_formats import ModelInput, PayloadFormat, write_payload
from deploystudio.payloads import parse_payload
from deploystudio.snippets import pretty_json

JSON_FORMATS = [f for f in PayloadFormat if f.json_key or f is PayloadFormat.JSON_ARRAY]
AUTO_FORMAT = "Auto"


def default_request_text(info: SignatureInfo | None, example: object, params: dict | None) -> str:
    """The JSON editor's starting text: the example as an Azure `input_data` body, else a
    template from the signature."""
    if isinstance(example, pd.DataFrame | np.ndarray | dict):
        try:
            body = write_payload(ModelInput(example, params), PayloadFormat.AZURE_INPUT_DATA)
            return pretty_json(str(body))
        except PayloadError:
            pass
    columns = info is not None and info.input_kind == "columns"
    if columns and all(f.name for f in info.inputs):
        row = form_frame(info.inputs, None)
        defaults = {p.name: p.default for p in info.params}
        try:
            body = write_payload(ModelInput(row, defaults or None), PayloadFormat.AZURE_INPUT_DATA)
            return pretty_json(str(body))
        except PayloadError:
            pass
    if info is not None and info.input_kind == "tensors":
        return pretty_json('{"input_data": []}')
    return pretty_json('{"input_data": {"columns": ["column_1", "column_2"], "data": [[0, 0]]}}')


def render_json_source(
    default_text: str, signature: ModelSignature | None, key: str
) -> Callable[[], ModelInput]:
    text_key, format_key = f"{key}_json_text", f"{key}_json_format"
    if text_key not in st.session_state:
        st.session_state[text_key] = default_text
    labels = {AUTO_FORMAT: "Auto (from the body)"} | {f.value: f.label for f in JSON_FORMATS}
    choice_column, reset_column = st.columns([3, 1], vertical_alignment="bottom")
    choice = choice_column.selectbox("Format", list(labels), format_func=labels.get, key=format_key)
    reset_column.button(
        "Reset the body",
        icon=":material/restart_alt:",
        help="Put the starting body back: the input example, or a template from the signature.",
        key=f"{key}_json_reset",
        on_click=_reset_text,
        args=(text_key, default_text),
    )
    text = st.text_area(
        "Request body",
        key=text_key,
        height=320,
        help="Azure ML's input_data, or an MLflow body: dataframe_split, dataframe_records, "
        'instances or inputs; an optional "params" object next to it.',
    )
    payload_format = None if choice == AUTO_FORMAT else PayloadFormat(choice)
    return lambda: parse_payload(text, signature, payload_format)


def _reset_text(text_key: str, default_text: str) -> None:
    st.session_state[text_key] = default_text
