"""Scoring script for a scikit-learn classifier: class probabilities instead of labels.

Azure ML's inference server calls init() once, then run() for each POST /score request.
Request:  {"input_data": {"columns": [...], "data": [[...]]}} (as the no-code scoring takes)
Response: one object per input row, {"<class label>": probability, ...}.
"""

import glob
import json
import os

import mlflow.sklearn
from azureml_inference_server_http.api.aml_response import AMLResponse
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.pyfunc.scoring_server import infer_and_parse_data

# @include find_model_folder
# @include parse_request


def init():
    """Load the scikit-learn model itself: its pyfunc predict() gives labels only."""
    global model, input_schema
    folder = find_model_folder()
    model = mlflow.sklearn.load_model(folder)
    if not hasattr(model, "predict_proba"):
        raise TypeError(
            f"{type(model).__name__} has no predict_proba(), so it gives no probabilities: "
            "use the no-code script for this model."
        )
    input_schema = Model.load(folder).get_input_schema()


def run(raw_data):
    """Score one request (the body as text); return one {label: probability} per row."""
    try:
        data, _params = parse_request(raw_data, input_schema)
        if input_schema is not None and input_schema.has_input_names():
            data = data[input_schema.input_names()]  # the columns, in the order of training
        probabilities = model.predict_proba(data)
    except (ValueError, KeyError, MlflowException) as error:
        return AMLResponse({"message": str(error)}, 400, json_str=True)
    labels = [str(label) for label in model.classes_]
    return [dict(zip(labels, map(float, row))) for row in probabilities]
