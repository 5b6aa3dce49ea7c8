"""Benchmark: a prediction preview through Deploy Studio vs. plain MLflow pyfunc.

For the demo classifier (iris-classifier, champion), in one run:
- cold load: the worker's first load of the model vs. `mlflow.pyfunc.load_model` here;
- for 1, 1,000 and 100,000 rows: the first and the cached preview of a frame as the Predict page
  makes it (`PredictionWorker.predict`: pickled to the worker process, predicted there with
  signature enforcement, the output sent back as JSON plus raw buffers (never unpickled here,
  see `deploystudio.worker.replies`) and made a table) vs. plain `model.predict(frame)`
  in this process. Both are warmed up first, then called in alternating blocks (each goes first
  half the time, so a noisy machine penalises both alike; see `alternate` for why blocks rather
  than single calls); medians of all calls, and the ratio;
- where a cached preview's time goes, as medians per phase: pickling the request here, reading
  it in the worker, `model.predict` in the worker, the rest of the worker's call (cache lookup,
  params check), transport (the worker encoding its answer, the socket, waking both processes),
  reading and decoding the answer here, and making the output a table here;
- converting the request into that frame (`deploystudio.payloads.parse_payload`) for an Azure
  ML `input_data` JSON body, a CSV upload and a Parquet upload, and its share of the preview.
Goals: a cached preview within 1.2x of the plain predict; conversion under 10% at 100,000 rows.

Run from the repository root (seeds the demo registry in DEPLOYSTUDIO_HOME if it is empty):

    .venv/bin/python bench/predict.py [--repeats 15]

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
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import numpy as np
import pandas as pd

from deploystudio.config import load_settings
from deploystudio.demo import seed_demo
from deploystudio.payload_formats import ModelInput, PayloadFormat, write_payload
from deploystudio.payloads import parse_payload
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from deploystudio.worker.process import PredictionWorker

MODEL_URI = "models:/iris-classifier@champion"
SIZES = (1, 1_000, 100_000)
WARM_UP_CALLS = 5
BLOCK_CALLS = 4
CACHED_RATIO_GOAL = 1.2
CONVERSION_SHARE_GOAL = 0.10
PHASES = ("encode", "w.decode", "w.predict", "w.other", "transport", "decode", "table")


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return pd.DataFrame(generator.uniform(0.1, 7.0, size=(n, 4)), columns=columns)


def seconds(fn: Callable[[], object]) -> tuple[float, object]:
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


def preview_phases(worker: PredictionWorker, total: float, predict_seconds: float) -> list[float]:
    """One cached preview's seconds per phase (see PHASES); empty without the worker's timings."""
    timings = getattr(worker, "last_timings", None)
    if timings is None:
        return []
    return [
        timings.encode,
        timings.worker_decode,
        predict_seconds,
        max(0.0, timings.worker_run - predict_seconds),
        timings.transport,
        timings.decode,
        max(0.0, total - timings.total),  # building the table from the worker's answer
    ]


def alternate(
    worker: PredictionWorker, model, model_path: Path, model_input: ModelInput, repeats: int
) -> tuple[list[float], list[float], list[list[float]]]:
    """Cached previews and plain predicts of one input, in alternating blocks of BLOCK_CALLS
    calls (each side goes first half the time): the seconds of each call, and each preview's
    phases. The first call of a block is not counted: sklearn's OpenMP and OpenBLAS threads
    spin for a while after their work, and the other process's spinning threads would slow it
    down (measured here: the worker's predict of 100,000 rows took 4x longer right after a plain
    predict than on its own; with one thread each, it did not)."""
    frame = model_input.data
    for _ in range(WARM_UP_CALLS):
        worker.predict(model_path, model_input)
        model.predict(frame)
    ours, plain, phases = [], [], []

    def preview_block() -> None:
        for call in range(BLOCK_CALLS + 1):
            took, prediction = seconds(lambda: worker.predict(model_path, model_input))
            if call:
                ours.append(took)
                phases.append(preview_phases(worker, took, prediction.predict_seconds))

    def plain_block() -> None:
        for call in range(BLOCK_CALLS + 1):
            took = seconds(lambda: model.predict(frame))[0]
            if call:
                plain.append(took)

    for repeat in range(repeats):
        for block in (
            (preview_block, plain_block) if repeat % 2 == 0 else (plain_block, preview_block)
        ):
            block()
    return ours, plain, phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="blocks per side and size")
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
    phase_rows = []
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
            ours, plain, phases = alternate(worker, model, model_path, model_input, args.repeats)
            cached, direct_median = statistics.median(ours), statistics.median(plain)
            if phases and phases[0]:
                phase_rows.append((n, [statistics.median(p) for p in zip(*phases, strict=True)]))
            parse = {
                f: statistics.median(
                    seconds(lambda b=body: parse_payload(b, schema))[0] for _ in range(args.repeats)
                )
                for f, body in bodies.items()
            }
            share = {f: parse[f] / (parse[f] + cached) for f in formats}
            ratio = cached / direct_median
            goals = [f"ratio {'met' if ratio <= CACHED_RATIO_GOAL else 'missed'}"]
            if n == max(SIZES):
                met = [f.value for f in formats if share[f] < CONVERSION_SHARE_GOAL]
                goals.append(f"conversion <10% for: {', '.join(met) or 'none'}")
            cells = " | ".join(f"{parse[f] * 1000:>11.1f} ({share[f]:>4.0%})" for f in formats)
            print(
                f"{n:>7} | {first * 1000:>8.0f} | {cached * 1000:>9.2f} | "
                f"{direct_median * 1000:>8.2f} | {ratio:>5.2f}x | {cells}   | " + ", ".join(goals),
                flush=True,
            )
    finally:
        worker.stop()
    if phase_rows:
        print("\nCached preview by phase, ms (medians per phase; they need not add up to the")
        print("median total). w. = in the worker; w.predict is model.predict there.")
        print(f"{'rows':>7} | " + " | ".join(f"{p:>9}" for p in PHASES))
        for n, medians in phase_rows:
            print(f"{n:>7} | " + " | ".join(f"{m * 1000:>9.3f}" for m in medians))
    print(
        f"\n{args.repeats} alternating blocks of {BLOCK_CALLS} counted calls per side and size, "
        f"after {WARM_UP_CALLS} warm-up calls; medians. Worker log: {log}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
