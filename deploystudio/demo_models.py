"""Custom pyfunc classes used by the demo models.

They are pickled by value when logged (see demo.py), so a demo model loads without Deploy Studio
installed, as any model from another team would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class ThresholdedRiskModel(PythonModel):
    """Returns the positive-class probability and a label decided by the `threshold` param."""

    def __init__(self, classifier, positive_label: str, negative_label: str) -> None:
        self.classifier = classifier
        self.positive_label = positive_label
        self.negative_label = negative_label

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        threshold = float((params or {}).get("threshold", 0.5))
        probability = self.classifier.predict_proba(model_input)[:, 1]
        labels = np.where(probability >= threshold, self.positive_label, self.negative_label)
        return pd.DataFrame({"probability": probability, "label": labels})


class DigitImageModel(PythonModel):
    """Takes 8x8 grey images as a float32 tensor of shape (-1, 8, 8) and returns the digit."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier

    def predict(self, context, model_input: np.ndarray, params: dict | None = None):
        images = np.asarray(model_input, dtype=np.float32)
        return self.classifier.predict(images.reshape(len(images), -1))
