"""The form input of a preview: one row of fields, or an editable table, from the signature."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from mlflow.models import ModelSignature

from components.typed_inputs import (
    column_config,
    empty_value,
    field_widget,
    in_lines,
    render_params,
)
from deploystudio.inspection import SchemaField, SignatureInfo
from deploystudio.payload_formats import ModelInput, PayloadFormat, write_payload
from deploystudio.payloads import check_params, parse_payload

FORM_ONE_ROW = "One row"
FORM_ROWS = "Several rows"


def form_frame(fields: list[SchemaField], example: object) -> pd.DataFrame:
    """The form's starting rows: the example's rows when it has every column, else one row of
    empty values (0, False, "") typed as the signature says."""
    names = [f.name for f in fields]
    if isinstance(example, pd.DataFrame) and len(example) and set(names) <= set(example.columns):
        return example[names].reset_index(drop=True)
    return pd.DataFrame({f.name: pd.Series([empty_value(f.type)]) for f in fields})


def frame_model_input(
    frame: pd.DataFrame, signature: ModelSignature | None, params: dict[str, Any] | None
) -> ModelInput:
    """A table from widgets, sent through the same JSON and casts a server applies."""
    if signature is not None:
        # Checked before writing: MLflow's writer infers a schema from the params and fails on
        # a list such as ["a", null] with its own exception text, which names no param.
        check_params(params, signature.params)
    body = write_payload(ModelInput(frame, params), PayloadFormat.DATAFRAME_SPLIT)
    return parse_payload(body, signature, PayloadFormat.DATAFRAME_SPLIT)


def render_form_source(
    info: SignatureInfo | None, signature: ModelSignature | None, example: object, key: str
) -> Callable[[], ModelInput] | None:
    if info is None:
        st.info(
            "This model has no signature, so there is no form to fill in: send a file or a JSON "
            "body instead."
        )
        return None
    if info.input_kind == "tensors":
        st.info(
            "This model takes tensors, which a form cannot hold: use the input example, upload "
            "an NPY or JSON file, or edit a JSON body instead."
        )
        return None
    if not all(f.name for f in info.inputs):
        st.info("The signature's columns have no names, so there is no form: use JSON instead.")
        return None
    fields = info.inputs
    start = form_frame(fields, example)
    mode = st.radio("Rows", [FORM_ONE_ROW, FORM_ROWS], horizontal=True, key=f"{key}_form_mode")
    if mode == FORM_ONE_ROW:

        def widget(field: SchemaField) -> Any:
            first = start[field.name].iloc[0] if len(start) else None
            name_key = f"{key}_field_{field.name}"
            return field_widget(field.name, field.type, first, name_key, field.required)

        values = in_lines(fields, widget)
        frame = pd.DataFrame({f.name: [v] for f, v in zip(fields, values, strict=True)})
    else:
        st.caption("Add rows with the + under the table; select rows to delete them.")
        frame = st.data_editor(
            start,
            num_rows="dynamic",
            hide_index=True,
            key=f"{key}_form_rows",
            column_config={f.name: column_config(f) for f in fields},
        )
    params = render_params(info.params, f"{key}_form")
    return lambda: frame_model_input(frame, signature, params)
