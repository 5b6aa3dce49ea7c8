"""Batch scoring script for an MLflow model (Azure ML batch deployments).

Azure ML calls init() once per worker, then run() with each mini-batch: a list of file paths.
run() returns a pandas DataFrame with one row per input row, and the file it came from.
"""

import glob
import os

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.scoring_server import parse_csv_input

# @include find_model_folder


def init():
    """Load the model once per worker."""
    global model, input_schema
    model = mlflow.pyfunc.load_model(find_model_folder())
    input_schema = model.metadata.get_input_schema()


def read_file(path):
    """One input file as a DataFrame: CSV (cast to the model's signature) or Parquet."""
    if path.lower().endswith(".csv"):
        with open(path, "rb") as file:
            return parse_csv_input(file, input_schema)
    if path.lower().endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    raise ValueError(f"{os.path.basename(path)}: only .csv and .parquet files can be scored.")


def as_frame(predictions):
    """Any model output as a DataFrame with one row per input row."""
    if isinstance(predictions, pd.DataFrame):
        return predictions.reset_index(drop=True)
    if isinstance(predictions, pd.Series):
        name = predictions.name or "prediction"
        return predictions.rename(name).reset_index(drop=True).to_frame()
    array = np.asarray(predictions)
    if array.ndim == 2:
        return pd.DataFrame(array, columns=[f"prediction_{i}" for i in range(array.shape[1])])
    return pd.DataFrame({"prediction": list(array) if array.ndim > 2 else array})


def run(mini_batch):
    """Score every file of the mini-batch; the rows of all files, each with its file name."""
    results = []
    for path in mini_batch:
        predictions = as_frame(model.predict(read_file(path)))
        predictions.insert(0, "file_name", os.path.basename(path))
        results.append(predictions)
    if not results:
        return pd.DataFrame(columns=["file_name"])
    return pd.concat(results, ignore_index=True)
