"""Benchmark: a prediction preview through Deploy Studio vs. plain MLflow pyfunc.

For the demo classifier (iris-classifier, champion), in one run:
- cold load: the worker's first load of the model vs. `mlflow.pyfunc.load_model` here;
- for 1, 1,000 and 100,000 rows: the first and the cached preview of a frame as the Predict page
  makes it (`PredictionWorker.predict`: pickled to the worker process, predicted there with
  signature enforcement, the output pickled back) vs. plain `model.predict(frame)` in this
  process, interleaved, medians, and the ratio;
- converting the request into that frame (`deploystudio.payloads.parse_payload`) for an Azure
  ML `input_data` JSON body, a CSV upload and a Parquet upload, and its share of the preview.
Goals: a cached preview within 1.2x of the plain predict; conversion under 10% at 100,000 rows.

Run from the repository root (seeds the demo registry in DEPLOYSTUDIO_HOME if it is empty):

    .venv/bin/python bench/predict.py [--repeats 9]

This prints figures; it is not a test and asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import numpy as np
import pandas as pd

from deploystudio.config import load_settings
from deploystudio.demo import seed_demo
from deploystudio.payloads import ModelInput, PayloadFormat, parse_payload, write_payload
from deploystudio.prediction import local_model_path
from deploystudio.prediction_worker import PredictionWorker
from deploystudio.registry import Registry

MODEL_URI = "models:/iris-classifier@champion"
SIZES = (1, 1_000, 100_000)
CACHED_RATIO_GOAL = 1.2
CONVERSION_SHARE_GOAL = 0.10


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return pd.DataFrame(generator.uniform(0.1, 7.0, size=(n, 4)), columns=columns)


def seconds(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def cold_plain_load_seconds(model_path: Path) -> float:
    """`mlflow.pyfunc.load_model` timed in a new interpreter, as the worker's first load is."""
    code = (
        "import time, mlflow.pyfunc\n"
        "t = time.perf_counter()\n"
        f"mlflow.pyfunc.load_model({str(model_path)!r})\n"
        "print(time.perf_counter() - t)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    settings = load_settings()
    registry = Registry(settings.tracking_uri, settings.registry_uri)
    if registry.is_empty():
        print(f"Seeding demo models into {settings.home} ...", flush=True)
        seed_demo(settings, registry)
    model_path = local_model_path(MODEL_URI, settings, registry)
    schema = mlflow.models.Model.load(str(model_path / "MLmodel")).get_input_schema()
    print(f"Model: {MODEL_URI} -> {model_path}")

    plain_load_cold = cold_plain_load_seconds(model_path)
    model = mlflow.pyfunc.load_model(str(model_path))
    log = Path(tempfile.mkdtemp(prefix="ds-bench-predict-")) / "worker.log"
    worker = PredictionWorker(log, timeout_seconds=600)
    try:
        # The worker's own start-up (interpreter, imports) is reported apart from its load.
        started = time.perf_counter()
        first = worker.predict(model_path, ModelInput(rows(1)))
        worker_first_call = time.perf_counter() - started
        print(
            f"\nCold load in a fresh process: worker {first.load_seconds * 1000:.0f} ms, plain "
            f"load_model {plain_load_cold * 1000:.0f} ms, ratio "
            f"{first.load_seconds / plain_load_cold:.2f}x (worker's first call including its "
            f"start: {worker_first_call:.1f} s)"
        )
        worker.stop()

        formats = (PayloadFormat.AZURE_INPUT_DATA, PayloadFormat.CSV, PayloadFormat.PARQUET)
        header = (
            f"{'rows':>7} | {'first ms':>8} | {'cached ms':>9} | {'plain ms':>8} | "
            f"{'ratio':>6} | "
            + " | ".join(f"{f.value + ' ms (share)':>20}" for f in formats)
            + " | goals"
        )
        print("\n" + header + "\n" + "-" * len(header))
        for n in SIZES:
            frame = rows(n)
            model_input = ModelInput(frame)
            bodies = {f: write_payload(model_input, f) for f in formats}
            worker.stop()  # "first": a fresh worker that starts and loads the model
            first = seconds(lambda mi=model_input: worker.predict(model_path, mi))[0]
            ours, plain = [], []
            for repeat in range(args.repeats):
                # Alternate who goes first, so a noisy machine penalises both alike.
                calls = [
                    (ours, lambda mi=model_input: worker.predict(model_path, mi)),
                    (plain, lambda frame=frame: model.predict(frame)),
                ]
                for samples, call in calls if repeat % 2 == 0 else calls[::-1]:
                    samples.append(seconds(call)[0])
            cached, direct = statistics.median(ours), statistics.median(plain)
            parse = {
                f: statistics.median(
                    seconds(lambda b=body: parse_payload(b, schema))[0] for _ in range(args.repeats)
                )
                for f, body in bodies.items()
            }
            share = {f: parse[f] / (parse[f] + cached) for f in formats}
            ratio = cached / direct
            goals = [f"ratio {'met' if ratio <= CACHED_RATIO_GOAL else 'missed'}"]
            if n == max(SIZES):
                met = [f.value for f in formats if share[f] < CONVERSION_SHARE_GOAL]
                goals.append(f"conversion <10% for: {', '.join(met) or 'none'}")
            cells = " | ".join(f"{parse[f] * 1000:>11.1f} ({share[f]:>4.0%})" for f in formats)
            print(
                f"{n:>7} | {first * 1000:>8.0f} | {cached * 1000:>9.2f} | {direct * 1000:>8.2f} | "
                f"{ratio:>5.2f}x | {cells}   | " + ", ".join(goals)
            )
    finally:
        worker.stop()
    print(f"\n{args.repeats} interleaved repeats per size; medians. Worker log: {log}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
