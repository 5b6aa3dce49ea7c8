"""Where a preview's input comes from: the logged example, a form from the signature, an
uploaded file, or a JSON body. Each source renders its widgets and returns a function that
builds the `ModelInput` when the user asks for a prediction (None when it has nothing yet).

Widget keys start with a per-model prefix, so what the user typed survives reruns and errors,
and one model's input never shows up in another's editor.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from mlflow.types import Schema

from components.model_details import render_input_example
from components.snippets import pretty_json
from deploystudio.errors import PayloadError
from deploystudio.inspection import ParamField, SchemaField, SignatureInfo
from deploystudio.payloads import (
    ModelInput,
    PayloadFormat,
    detect_format,
    parse_payload,
    write_payload,
)

InputBuilder = Callable[[], ModelInput]

SOURCE_EXAMPLE = "Input example"
SOURCE_FORM = "Form"
SOURCE_UPLOAD = "Upload a file"
SOURCE_JSON = "JSON"
SOURCES = (SOURCE_EXAMPLE, SOURCE_FORM, SOURCE_UPLOAD, SOURCE_JSON)

UPLOAD_TYPES = ["csv", "parquet", "pq", "json", "npy"]
JSON_FORMATS = [f for f in PayloadFormat if f.json_key or f is PayloadFormat.JSON_ARRAY]
AUTO_FORMAT = "Auto"
FORM_ONE_ROW = "One row"
FORM_ROWS = "Several rows"
UPLOAD_PREVIEW_ROWS = 20
FORM_COLUMNS_PER_LINE = 3

_FLOAT_TYPES = {"double", "float"}
_INT_TYPES = {"long", "integer"}


# ----------------------------------------------------------------------------- pure helpers


def editor_key(resolved_uri: str) -> str:
    """The prefix of one model's widget keys (tests use it to reach the widgets)."""
    return "predict_" + hashlib.sha256(resolved_uri.encode()).hexdigest()[:12]


def source_key(resolved_uri: str) -> str:
    """The session-state key of the selected input tab."""
    return f"{editor_key(resolved_uri)}_source"


def default_source(signature: SignatureInfo | None, example: object) -> str:
    if example is not None:
        return SOURCE_EXAMPLE
    if signature is not None and signature.input_kind == "columns":
        return SOURCE_FORM
    return SOURCE_JSON


def form_frame(fields: list[SchemaField], example: object) -> pd.DataFrame:
    """The form's starting rows: the example's rows when it has every column, else one row of
    empty values (0, False, "") typed as the signature says."""
    names = [f.name for f in fields]
    if isinstance(example, pd.DataFrame) and len(example) and set(names) <= set(example.columns):
        return example[names].reset_index(drop=True)
    return pd.DataFrame({f.name: pd.Series([_empty_value(f.type)]) for f in fields})


def frame_model_input(
    frame: pd.DataFrame, schema: Schema | None, params: dict[str, Any] | None
) -> ModelInput:
    """A table from widgets, sent through the same JSON and casts a server applies."""
    body = write_payload(ModelInput(frame, params), PayloadFormat.DATAFRAME_SPLIT)
    return parse_payload(body, schema, PayloadFormat.DATAFRAME_SPLIT)


def default_request_text(
    signature: SignatureInfo | None, example: object, params: dict | None
) -> str:
    """The JSON editor's starting text: the example as an Azure `input_data` body, else a
    template from the signature."""
    if isinstance(example, pd.DataFrame | np.ndarray | dict):
        try:
            body = write_payload(ModelInput(example, params), PayloadFormat.AZURE_INPUT_DATA)
            return pretty_json(str(body))
        except PayloadError:
            pass
    columns = signature is not None and signature.input_kind == "columns"
    if columns and all(f.name for f in signature.inputs):
        row = form_frame(signature.inputs, None)
        defaults = {p.name: p.default for p in signature.params}
        try:
            body = write_payload(ModelInput(row, defaults or None), PayloadFormat.AZURE_INPUT_DATA)
            return pretty_json(str(body))
        except PayloadError:
            pass
    if signature is not None and signature.input_kind == "tensors":
        return pretty_json('{"input_data": []}')
    return pretty_json('{"input_data": {"columns": ["column_1", "column_2"], "data": [[0, 0]]}}')


def _empty_value(type_name: str) -> Any:
    if type_name in _FLOAT_TYPES:
        return 0.0
    if type_name in _INT_TYPES:
        return 0
    if type_name == "boolean":
        return False
    return ""


def _first_row_value(frame: pd.DataFrame, name: str, type_name: str) -> Any:
    value = frame[name].iloc[0] if len(frame) else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _empty_value(type_name)
    if isinstance(value, np.generic):
        value = value.item()
    if type_name in _FLOAT_TYPES:
        return float(value)
    if type_name in _INT_TYPES:
        return int(value)
    if type_name == "boolean":
        return bool(value)
    return str(value)


# ----------------------------------------------------------------------------- sources


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


def render_form_source(
    signature: SignatureInfo | None, schema: Schema | None, example: object, key: str
) -> InputBuilder | None:
    if signature is None:
        st.info(
            "This model has no signature, so there is no form to fill in: send a file or a JSON "
            "body instead."
        )
        return None
    if signature.input_kind == "tensors":
        st.info(
            "This model takes tensors, which a form cannot hold: use the input example, upload "
            "an NPY or JSON file, or edit a JSON body instead."
        )
        return None
    if not all(f.name for f in signature.inputs):
        st.info("The signature's columns have no names, so there is no form: use JSON instead.")
        return None
    fields = signature.inputs
    start = form_frame(fields, example)
    mode = st.radio("Rows", [FORM_ONE_ROW, FORM_ROWS], horizontal=True, key=f"{key}_form_mode")
    if mode == FORM_ONE_ROW:
        values = {}
        for offset in range(0, len(fields), FORM_COLUMNS_PER_LINE):
            line = fields[offset : offset + FORM_COLUMNS_PER_LINE]
            for column, field in zip(st.columns(FORM_COLUMNS_PER_LINE), line, strict=False):
                with column:
                    values[field.name] = _field_widget(
                        field.name,
                        field.type,
                        _first_row_value(start, field.name, field.type),
                        f"{key}_field_{field.name}",
                        required=field.required,
                    )
        frame = pd.DataFrame({name: [value] for name, value in values.items()})
    else:
        st.caption("Add rows with the + under the table; select rows to delete them.")
        frame = st.data_editor(
            start,
            num_rows="dynamic",
            hide_index=True,
            key=f"{key}_form_rows",
            column_config={f.name: _column_config(f) for f in fields},
        )
    params = render_params(signature.params, f"{key}_form")
    return lambda: frame_model_input(frame, schema, params)


def render_upload_source(
    signature: SignatureInfo | None, schema: Schema | None, key: str
) -> InputBuilder | None:
    uploaded = st.file_uploader(
        "CSV, Parquet, JSON or NPY file",
        type=UPLOAD_TYPES,
        key=f"{key}_upload",
        help="The format is recognised from the file name and its content.",
    )
    if uploaded is None:
        st.caption("Tables as CSV or Parquet, tensors as NPY, any request body as JSON.")
        return None
    body = uploaded.getvalue()
    try:
        payload_format = detect_format(body, uploaded.name)
        model_input = parse_payload(body, schema, filename=uploaded.name)
    except PayloadError as exc:
        st.error(str(exc))
        return None
    st.caption(f"`{uploaded.name}` read as {payload_format.label}: {_describe(model_input)}")
    _preview(model_input)
    params = model_input.params
    if not payload_format.carries_params and signature is not None:
        params = render_params(signature.params, f"{key}_upload") or params
    return lambda: ModelInput(model_input.data, params, list(model_input.warnings))


def render_json_source(default_text: str, schema: Schema | None, key: str) -> InputBuilder:
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
    return lambda: parse_payload(text, schema, payload_format)


def _reset_text(text_key: str, default_text: str) -> None:
    st.session_state[text_key] = default_text


# ----------------------------------------------------------------------------- widgets


def render_params(params: list[ParamField], key: str) -> dict[str, Any] | None:
    """One widget per param of the signature, starting at its default; None without params."""
    if not params:
        return None
    st.markdown("**Params**")
    values: dict[str, Any] = {}
    for offset in range(0, len(params), FORM_COLUMNS_PER_LINE):
        line = params[offset : offset + FORM_COLUMNS_PER_LINE]
        for column, param in zip(st.columns(FORM_COLUMNS_PER_LINE), line, strict=False):
            with column:
                if param.shape is not None:
                    values[param.name] = _list_param(param, key)
                else:
                    default = param.default
                    if default is None:
                        default = _empty_value(param.type)
                    values[param.name] = _field_widget(
                        param.name, param.type, default, f"{key}_param_{param.name}"
                    )
    return values


def _list_param(param: ParamField, key: str) -> Any:
    text = st.text_input(
        f"{param.name} (list, JSON)",
        value=json.dumps(param.default if param.default is not None else []),
        key=f"{key}_param_{param.name}",
    )
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        st.error(f"Param '{param.name}' must be a JSON list such as [1, 2].")
        return param.default


def _field_widget(name: str, type_name: str, value: Any, key: str, required: bool = True) -> Any:
    label = name if required else f"{name} (optional)"
    if type_name in _FLOAT_TYPES:
        return st.number_input(label, value=float(value), format="%g", key=key, help=type_name)
    if type_name in _INT_TYPES:
        return st.number_input(label, value=int(value), step=1, key=key, help=type_name)
    if type_name == "boolean":
        return st.checkbox(label, value=bool(value), key=key, help=type_name)
    return st.text_input(label, value=str(value), key=key, help=type_name)


def _column_config(field: SchemaField) -> Any:
    label = field.name if field.required else f"{field.name} (optional)"
    if field.type in _FLOAT_TYPES:
        return st.column_config.NumberColumn(label, help=field.type, format="%g")
    if field.type in _INT_TYPES:
        return st.column_config.NumberColumn(label, help=field.type, step=1, format="%d")
    if field.type == "boolean":
        return st.column_config.CheckboxColumn(label, help=field.type)
    return st.column_config.TextColumn(label, help=field.type)


def _describe(model_input: ModelInput) -> str:
    data = model_input.data
    if isinstance(data, pd.DataFrame):
        return f"{len(data)} row(s) × {data.shape[1]} column(s)"
    if isinstance(data, np.ndarray):
        return f"a tensor of shape {data.shape} ({data.dtype})"
    return ", ".join(f"tensor '{n}' {a.shape}" for n, a in data.items())


def _preview(model_input: ModelInput) -> None:
    data = model_input.data
    if isinstance(data, pd.DataFrame):
        st.dataframe(data.head(UPLOAD_PREVIEW_ROWS), hide_index=True)
    elif isinstance(data, np.ndarray) and data.ndim <= 2:
        st.dataframe(pd.DataFrame(np.atleast_2d(data)[:UPLOAD_PREVIEW_ROWS]))
