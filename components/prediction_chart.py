"""Predictions as a table joined to their inputs, and the chart that suits the output.

Pure functions of DataFrames (no Streamlit), so the choice of chart is tested on its own:
- several numeric columns that look like per-class probabilities -> stacked bars per row;
- labels (text, booleans, or integers with few distinct values) -> counts per class;
- float predictions (regression) -> a histogram.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from deploystudio.payload_formats import ModelInput

# Integers with at most this many distinct values are class labels; more, a count or a score.
MAX_LABEL_CLASSES = 20
# Rows of probabilities drawn; past this, bars are too thin to read.
MAX_PROBABILITY_ROWS = 100
PROBABILITY_SUM_TOLERANCE = 0.01
CHART_HEIGHT = 360
# Column names models commonly give the prediction itself, in order of preference.
PREDICTION_COLUMN_NAMES = ("prediction", "predictions", "label", "labels", "class", "output")


class ChartKind(Enum):
    CLASS_COUNTS = "class_counts"
    PROBABILITIES = "probabilities"
    HISTOGRAM = "histogram"


def results_frame(model_input: ModelInput, output: pd.DataFrame) -> pd.DataFrame:
    """Inputs and predictions side by side (one row per input row), for a table and a CSV.

    Tensors are not columns: their predictions stand alone. An output column named like an
    input column is renamed "<name> (predicted)" so neither hides the other.
    """
    data = model_input.data
    if not isinstance(data, pd.DataFrame) or len(data) != len(output):
        return output.reset_index(drop=True)
    inputs = data.reset_index(drop=True)
    taken = {str(c) for c in inputs.columns}
    renamed = output.reset_index(drop=True).rename(
        columns={c: f"{c} (predicted)" for c in output.columns if str(c) in taken}
    )
    return pd.concat([inputs, renamed], axis=1)


def chart_kind(output: pd.DataFrame) -> tuple[ChartKind, list[str]] | None:
    """Which chart suits `output`, and the columns it draws; None when none fits."""
    if output.empty:
        return None
    numeric = [
        str(c)
        for c in output.columns
        if pd.api.types.is_numeric_dtype(output[c]) and not pd.api.types.is_bool_dtype(output[c])
    ]
    if len(numeric) >= 2 and _looks_like_probabilities(output[numeric]):
        return ChartKind.PROBABILITIES, numeric
    column = prediction_column(output)
    if column is None:
        return None
    values = output[column]
    if not _is_scalar_column(values):
        return None
    if pd.api.types.is_float_dtype(values):
        return ChartKind.HISTOGRAM, [column]
    if pd.api.types.is_integer_dtype(values) and values.nunique() > MAX_LABEL_CLASSES:
        return ChartKind.HISTOGRAM, [column]
    return ChartKind.CLASS_COUNTS, [column]


def prediction_column(output: pd.DataFrame) -> str | None:
    """The column holding the prediction: a conventional name, else the first label-like
    (non-float) column, else the first column."""
    names = {str(c).lower(): str(c) for c in output.columns}
    for name in PREDICTION_COLUMN_NAMES:
        if name in names:
            return names[name]
    for column in output.columns:
        if not pd.api.types.is_float_dtype(output[column]):
            return str(column)
    return str(output.columns[0]) if len(output.columns) else None


def prediction_figure(output: pd.DataFrame) -> go.Figure | None:
    """A plotly figure for the predictions, or None when no chart suits them."""
    choice = chart_kind(output)
    if choice is None:
        return None
    kind, columns = choice
    if kind is ChartKind.PROBABILITIES:
        shown = output[columns].head(MAX_PROBABILITY_ROWS).reset_index(drop=True)
        long = (
            shown.rename_axis("row")
            .reset_index()
            .melt(id_vars="row", var_name="class", value_name="probability")
        )
        long["row"] = long["row"].astype(str)
        cut = f" (first {MAX_PROBABILITY_ROWS} rows)" if len(output) > MAX_PROBABILITY_ROWS else ""
        figure = px.bar(
            long, x="row", y="probability", color="class", title=f"Probability per class{cut}"
        )
        figure.update_layout(barmode="stack", xaxis_title="input row", height=CHART_HEIGHT)
        return figure
    column = columns[0]
    if kind is ChartKind.CLASS_COUNTS:
        counts = output[column].value_counts()
        try:
            counts = counts.sort_index()
        except TypeError:  # mixed types: text order
            counts = counts.sort_index(key=lambda index: index.astype(str))
        frame = pd.DataFrame({column: counts.index.astype(str), "rows": counts.to_numpy()})
        title = "Rows per predicted class" + ("" if column == "prediction" else f" ({column})")
        figure = px.bar(frame, x=column, y="rows", title=title)
        # Classes are names even when they are digits; counts are whole numbers.
        figure.update_xaxes(type="category")
        if counts.max() <= MAX_LABEL_CLASSES:
            figure.update_yaxes(dtick=1)
        return figure.update_layout(height=CHART_HEIGHT)
    return px.histogram(
        output, x=column, title=f"Distribution of {column} ({len(output)} rows)"
    ).update_layout(yaxis_title="rows", height=CHART_HEIGHT)


def _looks_like_probabilities(frame: pd.DataFrame) -> bool:
    values = frame.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        return False
    if (values < 0).any():
        return False
    sums_to_one = np.allclose(values.sum(axis=1), 1.0, atol=PROBABILITY_SUM_TOLERANCE)
    return sums_to_one or bool((values <= 1).all())


def _is_scalar_column(values: pd.Series) -> bool:
    """False for columns of arrays or dicts (a tensor per row), which no bar chart shows."""
    if values.dtype != object:
        return True
    return all(isinstance(v, str | int | float | bool | np.generic) or v is None for v in values)
