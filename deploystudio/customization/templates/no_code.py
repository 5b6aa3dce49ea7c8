"""Scoring script for an MLflow model: what Azure ML's automatic (no-code) scoring does.

Azure ML's inference server calls init() once, then run() for each POST /score request.
Request:  {"input_data": {"columns": [...], "data": [[...]]}, "params": {...}}
          (input_data may also be a list, one tensor, or an object of named lists)
Response: the predictions as a JSON list, one entry per input row.
"""

import glob
import json
import os

import mlflow
from azureml_inference_server_http.api.aml_response import AMLResponse
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from mlflow.utils.proto_json_utils import _get_jsonable_obj

# @include find_model_folder
# @include parse_request


def init():
    """Load the model once, when the server starts."""
    global model, input_schema
    model = mlflow.pyfunc.load_model(find_model_folder())
    input_schema = model.metadata.get_input_schema()


def run(raw_data):
    """Score one request (the body as text); return something JSON can encode."""
    try:
        data, params = parse_request(raw_data, input_schema)
        predictions = model.predict(data, params=params)
    except (ValueError, MlflowException) as error:
        # The request does not fit the model: answer 400 with the reason rather than a 500.
        return AMLResponse({"message": str(error)}, 400, json_str=True)
    # As Azure's automatic scoring answers: a list, with one record per row for a table.
    return _get_jsonable_obj(predictions, pandas_orient="records")
