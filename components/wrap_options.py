"""The options of a wrapper, as widgets: each kind's settings in, a `WrapSpec` out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from deploystudio.customization.wrapping import (
    CAST_TYPES,
    PIPELINE_STEPS,
    PostProcessing,
    PreProcessing,
    WrapperKind,
    WrapSpec,
    custom_code_template,
)

KIND_LABELS = {
    WrapperKind.PROBABILITIES: "Probabilities instead of classes",
    WrapperKind.PRE_POST: "Pre/post-processing steps",
    WrapperKind.PIPELINE: "scikit-learn Pipeline (stays sklearn-native)",
    WrapperKind.CUSTOM_CODE: "Custom pyfunc code",
}
KIND_HELP = {
    WrapperKind.PROBABILITIES: "Returns `predict_proba`: one column per class, named by label.",
    WrapperKind.PRE_POST: "Fixes the input before the model and shapes the output after it.",
    WrapperKind.PIPELINE: "Puts preprocessing steps in front of the fitted estimator.",
    WrapperKind.CUSTOM_CODE: "Your own `PythonModel` class around the original model.",
}


def _blank(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or (isinstance(value, float) and pd.isna(value))
        or (isinstance(value, str) and value.strip() == "")
    )


def pairs_to_mapping(frame: pd.DataFrame, key_column: str, value_column: str) -> dict[str, Any]:
    """Rows of a two-column editor as a mapping; a row missing either cell is still being typed,
    so it is left out."""
    return {
        str(key).strip(): value
        for key, value in zip(frame[key_column], frame[value_column], strict=True)
        if not _blank(key) and not _blank(value)
    }


def _pair_editor(
    label: str, key: str, columns: tuple[str, str], help_text: str, value_config: Any = None
) -> dict[str, Any]:
    st.caption(f"**{label}**: {help_text}")
    empty = pd.DataFrame({columns[0]: pd.Series(dtype="string"), columns[1]: pd.Series()})
    if value_config is None:
        empty[columns[1]] = empty[columns[1]].astype("string")
    edited = st.data_editor(
        empty,
        key=key,
        num_rows="dynamic",
        hide_index=True,
        column_config={columns[1]: value_config} if value_config is not None else None,
        width="stretch",
    )
    return pairs_to_mapping(edited, *columns)


def _pre_processing(columns: list[str], key: str) -> PreProcessing:
    st.markdown("###### Before the model")
    rename = _pair_editor(
        "Rename columns",
        f"{key}_rename",
        ("incoming name", "model's name"),
        "callers send the left name, the model gets the right one.",
    )
    select = st.multiselect(
        "Keep only these columns (in this order)",
        options=columns,
        key=f"{key}_select",
        help="Empty keeps every column.",
    )
    drop = st.multiselect("Drop columns", options=columns, key=f"{key}_drop")
    fill = _pair_editor(
        "Fill missing values",
        f"{key}_fill",
        ("column", "value"),
        "a value used where the column is empty.",
    )
    cast = _pair_editor(
        "Cast types",
        f"{key}_cast",
        ("column", "type"),
        "the type the column is converted to before the model.",
        st.column_config.SelectboxColumn(options=list(CAST_TYPES)),
    )
    return PreProcessing(
        rename_columns=rename,
        select_columns=tuple(select),
        drop_columns=tuple(drop),
        fill_missing=_numbers_where_possible(fill),
        cast_types={column: str(kind) for column, kind in cast.items() if kind},
    )


def _numbers_where_possible(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Fill values typed in a text cell: "0.5" means the number, "unknown" the text."""
    converted: dict[str, Any] = {}
    for column, value in mapping.items():
        text = "" if value is None else str(value).strip()
        try:
            converted[column] = int(text)
        except ValueError:
            try:
                converted[column] = float(text)
            except ValueError:
                converted[column] = text
    return converted


def _post_processing(key: str) -> PostProcessing:
    st.markdown("###### After the model")
    label_map = _pair_editor(
        "Map labels",
        f"{key}_labels",
        ("model's label", "shown label"),
        "replaces predicted labels, e.g. 0 → healthy.",
    )
    left, right = st.columns(2)
    use_threshold = left.checkbox(
        "Apply a threshold",
        key=f"{key}_use_threshold",
        help="Binary classifiers: the positive class when its probability reaches the threshold.",
    )
    threshold = left.slider(
        "Threshold", 0.0, 1.0, 0.5, 0.01, key=f"{key}_threshold", disabled=not use_threshold
    )
    use_round = right.checkbox("Round numbers", key=f"{key}_use_round")
    digits = right.number_input(
        "Decimal places", 0, 12, 2, key=f"{key}_digits", disabled=not use_round
    )
    confidence = st.checkbox(
        "Add a confidence column",
        key=f"{key}_confidence",
        help="The highest class probability for each row (needs predict_proba).",
    )
    return PostProcessing(
        label_map={str(k): str(v) for k, v in label_map.items() if v is not None},
        threshold=float(threshold) if use_threshold else None,
        round_digits=int(digits) if use_round else None,
        add_confidence=confidence,
    )


def render_wrap_options(kind: WrapperKind, columns: list[str], key: str) -> WrapSpec:
    """The widgets of one wrapper kind; the spec they describe."""
    if kind is WrapperKind.PRE_POST:
        pre = _pre_processing(columns, key)
        post = _post_processing(key)
        return WrapSpec(kind=kind, pre=pre, post=post)
    if kind is WrapperKind.PIPELINE:
        steps = st.multiselect(
            "Steps before the estimator (in this order)",
            options=list(PIPELINE_STEPS),
            format_func=lambda step: f"{step}: {PIPELINE_STEPS[step]}",
            key=f"{key}_steps",
        )
        return WrapSpec(kind=kind, pipeline_steps=tuple(steps))
    if kind is WrapperKind.CUSTOM_CODE:
        code = st.text_area(
            "Your PythonModel",
            value=custom_code_template(),
            height=420,
            key=f"{key}_code",
            help="Validated before it is logged: it must import, define predict(self, context, "
            "model_input, params=None) and run on the input example.",
        )
        return WrapSpec(kind=kind, custom_code=code)
    return WrapSpec(kind=kind)
