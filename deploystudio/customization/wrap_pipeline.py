"""The pipeline wrapper: an sklearn Pipeline of repair steps in front of the fitted estimator,
saved with MLflow's sklearn flavor so it stays a native scikit-learn model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import skops.io
from sklearn.base import TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from deploystudio.errors import WrapError

# The estimator's step name inside the wrapping Pipeline.
ESTIMATOR_STEP = "model"


def _step(key: str, example: Any) -> TransformerMixin:
    if key == "clip-outliers":
        numbers = np.asarray(example)
        if not np.issubdtype(numbers.dtype, np.number):
            raise WrapError("clip-outliers needs numeric columns only; remove it or the others.")
        # np.clip clips column by column given one bound per column, on arrays and DataFrames,
        # and numpy.clip is a plain function skops can store by name (no code of ours).
        return FunctionTransformer(
            np.clip,
            kw_args={
                "a_min": np.nanmin(numbers, axis=0).tolist(),
                "a_max": np.nanmax(numbers, axis=0).tolist(),
            },
            feature_names_out="one-to-one",
        )
    strategy = {
        "impute-median": {"strategy": "median"},
        "impute-mean": {"strategy": "mean"},
        "impute-most-frequent": {"strategy": "most_frequent"},
        "impute-zero": {"strategy": "constant", "fill_value": 0},
    }[key]
    # keep_empty_features: an all-missing column in the example must not disappear.
    return SimpleImputer(keep_empty_features=True, **strategy)


def build_pipeline(estimator: Any, steps: tuple[str, ...], example: Any) -> Pipeline:
    """The chosen steps, each fitted on the example in turn, then the untouched estimator.

    Only the repair steps are fitted (Pipeline.fit would retrain the estimator).
    """
    if np.ndim(example) != 2:
        raise WrapError(
            "Pipeline steps need a table of columns as input; this model takes an input of "
            f"shape {np.shape(example)}."
        )
    data = example
    fitted = []
    for key in steps:
        step = _step(key, data)
        if isinstance(example, pd.DataFrame):
            # Keep column names between steps: the estimator was fitted with them.
            step.set_output(transform="pandas")
        try:
            data = step.fit(data).transform(data)
        except (ValueError, TypeError) as exc:
            raise WrapError(f"The step {key} cannot be fitted on the input example: {exc}") from exc
        fitted.append((key, step))
    return Pipeline([*fitted, (ESTIMATOR_STEP, estimator)])


def trusted_types(pipeline: Pipeline, source_trusted: list[str] | None) -> list[str] | None:
    """The types skops must trust to load the pipeline: the source model's own list, plus the
    types of the steps we added (found by dumping each step alone, so nothing else is trusted)."""
    added = set()
    for _name, step in pipeline.steps[:-1]:
        added.update(skops.io.get_untrusted_types(data=skops.io.dumps(step)))
    trusted = sorted(set(source_trusted or []) | added)
    return trusted or None
