"""Scoring script for an MLflow model, with your own steps before and after the model.

Edit preprocess() and postprocess() below; as generated, they change nothing, and the script
answers exactly as Azure ML's automatic (no-code) scoring does.
Azure ML's inference server calls init() once, then run() for each POST /score request.
"""

import glob
import json
import os

import mlflow
from azureml_inference_server_http.api.aml_response import AMLResponse
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from mlflow.utils.proto_json_utils import _get_jsonable_obj


def preprocess(data):
    """EDIT ME: change the input before the model sees it.

    `data` is a pandas DataFrame for table requests, a numpy array for a list, or a dict of
    numpy arrays for named tensors. Return the same kind of value.
    """
    return data


def postprocess(predictions):
    """EDIT ME: change the model's predictions before they are sent back.

    `predictions` is what the model returned (a numpy array, a pandas DataFrame or Series...).
    Return anything JSON can encode, or a DataFrame/array (sent as a list).
    """
    return predictions


# @include find_model_folder
# @include parse_request


def init():
    """Load the model once, when the server starts."""
    global model, input_schema
    model = mlflow.pyfunc.load_model(find_model_folder())
    input_schema = model.metadata.get_input_schema()


def run(raw_data):
    """Score one request (the body as text): parse, preprocess, predict, postprocess."""
    try:
        data, params = parse_request(raw_data, input_schema)
        predictions = model.predict(preprocess(data), params=params)
    except (ValueError, MlflowException) as error:
        return AMLResponse({"message": str(error)}, 400, json_str=True)
    return _get_jsonable_obj(postprocess(predictions), pandas_orient="records")
