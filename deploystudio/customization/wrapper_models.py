"""A Deploy Studio wrapper around an MLflow model, saved as an MLflow "model from code".

Deploy Studio copies this file into each wrapped model and writes the wrapper's options into
OPTIONS, so the file must import nothing from Deploy Studio: the wrapped model loads wherever
mlflow, numpy and pandas are installed (an Azure ML endpoint, `mlflow models serve`). The
original model is stored inside the wrapped one, as the artifact "source_model".

OPTIONS holds "kind" ("proba" or "pre-post"), "pre" and "post":
- pre, applied to the input in this order: rename_columns {incoming: expected},
  select_columns [names], drop_columns [names], fill_missing {column: value},
  cast_types {column: pandas dtype};
- post, applied to the original model's output: threshold (binary models: the positive class
  when its probability is at least the threshold), label_map {label: shown label},
  add_confidence (the highest class probability), round_digits.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

# Deploy Studio writes this model's options here, as JSON, when it saves the model.
OPTIONS: dict = json.loads("{}")

SOURCE_ARTIFACT = "source_model"
PROBABILITIES = "proba"


def apply_pre(model_input, pre: dict):
    """The input as the original model expects it."""
    if not pre:
        return model_input
    if not isinstance(model_input, pd.DataFrame):
        raise TypeError("Pre-processing steps need named columns (a DataFrame) as input.")
    frame = model_input.rename(columns=pre.get("rename_columns", {}))
    select = list(pre.get("select_columns", []))
    if select:
        missing = [c for c in select if c not in frame.columns]
        if missing:
            raise KeyError(f"The input lacks the columns to keep: {missing}")
        frame = frame[select]
    drop = [c for c in pre.get("drop_columns", []) if c in frame.columns]
    if drop:
        frame = frame.drop(columns=drop)
    fill = {c: v for c, v in pre.get("fill_missing", {}).items() if c in frame.columns}
    if fill:
        frame = frame.fillna(value=fill)
    cast = {c: t for c, t in pre.get("cast_types", {}).items() if c in frame.columns}
    if cast:
        frame = frame.astype(cast)
    return frame


def output_frame(raw) -> pd.DataFrame:
    """Any pyfunc output as a DataFrame with one row per input row (as Deploy Studio's
    predictions_frame does; repeated here because this file cannot import Deploy Studio)."""
    if isinstance(raw, pd.DataFrame):
        return raw.reset_index(drop=True)
    if isinstance(raw, pd.Series):
        return raw.rename(raw.name or "prediction").reset_index(drop=True).to_frame()
    array = np.asarray(raw)
    if array.ndim == 1:
        return pd.DataFrame({"prediction": array})
    if array.ndim == 2:
        return pd.DataFrame(array, columns=[f"prediction_{i}" for i in range(array.shape[1])])
    raise TypeError(f"Cannot post-process an output of shape {array.shape}.")


def probabilities_frame(probabilities: np.ndarray, classes) -> pd.DataFrame:
    """predict_proba as one column per class, named by the class label."""
    return pd.DataFrame(np.asarray(probabilities), columns=[str(c) for c in classes])


def _is_label_column(column: pd.Series) -> bool:
    return not pd.api.types.is_float_dtype(column)


def apply_post(output: pd.DataFrame, post: dict, probabilities=None, classes=None):
    """The original model's output with the post-processing steps applied.

    `probabilities` is predict_proba's array and `classes` its class labels, in its order;
    both are needed only for `threshold` and `add_confidence`.
    """
    output = output.copy()
    threshold = post.get("threshold")
    if threshold is not None:
        negative, positive = list(classes)
        # The output has one column of labels (checked when the wrapper is built).
        chosen = [positive if p >= threshold else negative for p in probabilities[:, 1]]
        output[output.columns[0]] = chosen
    label_map = post.get("label_map", {})
    if label_map:
        for name in output.columns:
            if _is_label_column(output[name]):
                output[name] = [label_map.get(str(v), v) for v in output[name]]
    if post.get("add_confidence"):
        output["confidence"] = np.asarray(probabilities).max(axis=1)
    digits = post.get("round_digits")
    if digits is not None:
        floats = [c for c in output.columns if pd.api.types.is_float_dtype(output[c])]
        output[floats] = output[floats].round(int(digits))
    return output


def framework_object(model):
    """The object behind a loaded pyfunc model: a flavor's native model (e.g. the scikit-learn
    estimator), or a custom model's PythonModel instance."""
    try:
        return model.get_raw_model()
    except NotImplementedError:
        return model.unwrap_python_model()


def needs_probabilities(options: dict) -> bool:
    post = options.get("post", {})
    return (
        options.get("kind") == PROBABILITIES
        or post.get("threshold") is not None
        or bool(post.get("add_confidence"))
    )


class WrappedModel(PythonModel):
    """Runs the original model, with the steps in `options` around it."""

    def __init__(self, options: dict) -> None:
        self.options = options

    def load_context(self, context) -> None:
        self.source = mlflow.pyfunc.load_model(context.artifacts[SOURCE_ARTIFACT])
        # The framework's own object (e.g. the scikit-learn estimator), for predict_proba.
        self.estimator = (
            framework_object(self.source) if needs_probabilities(self.options) else None
        )

    def predict(self, context, model_input, params=None):
        data = apply_pre(model_input, self.options.get("pre", {}))
        probabilities = None
        if self.estimator is not None:
            probabilities = np.asarray(self.estimator.predict_proba(data))
        if self.options.get("kind") == PROBABILITIES:
            return probabilities_frame(probabilities, self.estimator.classes_)
        output = output_frame(self.source.predict(data, params=params))
        return apply_post(
            output,
            self.options.get("post", {}),
            probabilities,
            getattr(self.estimator, "classes_", None),
        )
