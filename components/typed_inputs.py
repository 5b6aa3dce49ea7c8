"""Widgets for one typed value of a signature (a column or a param), and the params block.

The signature's type decides the widget (number, whole number, checkbox, text) and how a
value from an example is shown in it; one place says so for single fields, table columns and
params alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import streamlit as st

from deploystudio.inspection import ParamField, SchemaField

FLOAT_TYPES = frozenset({"double", "float"})
INT_TYPES = frozenset({"long", "integer"})
BOOLEAN_TYPE = "boolean"
FIELDS_PER_LINE = 3

Item = TypeVar("Item")


def empty_value(type_name: str) -> Any:
    """The value a new field starts at: 0, False or "" as the type says."""
    return typed_value(None, type_name)


def typed_value(value: Any, type_name: str) -> Any:
    """`value` as the Python type of its widget; a missing value becomes the empty one."""
    if pd.api.types.is_scalar(value) and pd.isna(value):  # None, NaN, pd.NA, NaT
        value = None
    elif isinstance(value, np.generic):
        value = value.item()
    if type_name in FLOAT_TYPES:
        return 0.0 if value is None else float(value)
    if type_name in INT_TYPES:
        return 0 if value is None else int(value)
    if type_name == BOOLEAN_TYPE:
        return False if value is None else bool(value)
    return "" if value is None else str(value)


def in_lines(items: Sequence[Item], render: Callable[[Item], Any]) -> list[Any]:
    """`render(item)` for each item, laid out FIELDS_PER_LINE to a line; their results."""
    results = []
    for offset in range(0, len(items), FIELDS_PER_LINE):
        line = items[offset : offset + FIELDS_PER_LINE]
        for column, item in zip(st.columns(FIELDS_PER_LINE), line, strict=False):
            with column:
                results.append(render(item))
    return results


def field_widget(name: str, type_name: str, value: Any, key: str, required: bool = True) -> Any:
    label = name if required else f"{name} (optional)"
    value = typed_value(value, type_name)
    if type_name in FLOAT_TYPES:
        return st.number_input(label, value=value, format="%g", key=key, help=type_name)
    if type_name in INT_TYPES:
        return st.number_input(label, value=value, step=1, key=key, help=type_name)
    if type_name == BOOLEAN_TYPE:
        return st.checkbox(label, value=value, key=key, help=type_name)
    return st.text_input(label, value=value, key=key, help=type_name)


def column_config(field: SchemaField) -> Any:
    """The `st.data_editor` column for a field: the same kinds of input as `field_widget`."""
    label = field.name if field.required else f"{field.name} (optional)"
    if field.type in FLOAT_TYPES:
        return st.column_config.NumberColumn(label, help=field.type, format="%g")
    if field.type in INT_TYPES:
        return st.column_config.NumberColumn(label, help=field.type, step=1, format="%d")
    if field.type == BOOLEAN_TYPE:
        return st.column_config.CheckboxColumn(label, help=field.type)
    return st.column_config.TextColumn(label, help=field.type)


def render_params(params: list[ParamField], key: str) -> dict[str, Any] | None:
    """One widget per param of the signature, starting at its default; None without params."""
    if not params:
        return None
    st.markdown("**Params**")

    def widget(param: ParamField) -> Any:
        if param.shape is not None:
            return _list_param(param, key)
        return field_widget(param.name, param.type, param.default, f"{key}_param_{param.name}")

    return dict(zip([p.name for p in params], in_lines(params, widget), strict=True))


def _list_param(param: ParamField, key: str) -> Any:
    text = st.text_input(
        f"{param.name} (list, JSON)",
        value=json.dumps(param.default if param.default is not None else []),
        key=f"{key}_param_{param.name}",
    )
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    flat = isinstance(value, list) and not any(isinstance(v, list | dict) for v in value)
    if flat:
        return value
    st.error(f"Param '{param.name}' must be a JSON list of single values, such as [1, 2].")
    # The text itself, not the default: Predict then refuses it by name instead of quietly
    # sending a value the user did not type (MLflow's own check lets [null, []] through).
    return text
