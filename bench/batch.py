"""Benchmark: a local batch job vs. plain pandas.read_csv + model.predict, in the same run.

For the demo classifier (iris-classifier, champion) and 1 million rows in 10 CSV files of
100,000 rows (a batch job runs files in parallel, as Azure ML does, so one file would keep one
worker busy), each repeat measures:
- plain: `pandas.read_csv` + `model.predict` of every file, one process (this one, model loaded);
- a batch job with 1 worker and with 2 workers (`mini_batch_size` 1, predictions.csv written),
  from the job's start to its end minus the time its first worker spent loading the model (a
  fixed cost per job, reported apart), so rows/s compares scoring with scoring. Subtracting the
  first load, not the last, counts the time one worker scores while the other still loads
  against the job: a conservative figure for 2 workers.
- plain+csv: the same loop also writing what the job writes (row, prediction, file_name) with
  pandas' `to_csv`, for context: the issue's plain loop writes nothing.
Peak RSS: the plain loop's own peak (a fresh process per repeat), and the job workers' peak.
Goals: >= 0.9x the plain rows/s with 1 worker, >= 1.6x with 2 workers on 2 cores.
Medians over the repeats. Other work sharing the CPU slows every variant; the variants
alternate order between repeats so that such noise falls on each alike.

    .venv/bin/python bench/batch.py [--repeats 3] [--rows 1000000] [--files 10]

This prints figures; it is not a test and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np
import pandas as pd

from deploystudio.config import load_settings
from deploystudio.demo import seed_demo
from deploystudio.deployment.batch.jobs import BatchSettings, start_batch_job, wait_for_batch_job
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry

MODEL_URI = "models:/iris-classifier@champion"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
GOALS = {1: 0.9, 2: 1.6}

# The plain loop, in a fresh process so that its peak RSS is its own. With an output path it
# also writes what a job writes (row, prediction, file_name) the way a pandas user would.
PLAIN = """
import json, os, resource, sys, time
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
output = sys.argv[2] or None
started = time.perf_counter()
rows = 0
for path in sys.argv[3:]:
    frame = pd.read_csv(path)
    predictions = model.predict(frame)
    if output:
        out = pd.DataFrame({"row": range(len(frame)), "prediction": predictions})
        out["file_name"] = os.path.basename(path)
        out.to_csv(output, mode="a", header=not rows, index=False)
    rows += len(frame)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak}))
"""


def write_inputs(folder: Path, rows: int, files: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(files):
        frame = pd.DataFrame(rng.uniform(0.1, 7.9, (rows // files, 4)).round(2), columns=COLUMNS)
        path = folder / f"part-{index:02d}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def plain(model_path: Path, paths: list[Path], output: Path | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PLAIN, str(model_path), str(output or ""), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def batch(settings, folder: Path, workers: int, output: Path) -> dict:
    options = BatchSettings(mini_batch_size=1, max_concurrency_per_instance=workers, timeout=600)
    job = start_batch_job(
        settings, MODEL_URI, folder, batch_settings=options, output_dir=output,
        restrict_input=False,
    )  # fmt: skip
    job = wait_for_batch_job(settings, job.id, poll_seconds=0.2)
    if job.state != "completed":
        raise SystemExit(f"The batch job {job.id} {job.state}: {job.reason}")
    load = job.summary["model_load_seconds"]
    return {
        "rows": job.rows_done,
        # The job's span minus the model load of its first worker to be ready (a fixed cost).
        "seconds": job.summary["seconds"] - job.summary["first_worker_ready_seconds"],
        "load_seconds": load,
        "peak_mb": job.summary["worker_memory"]["peak_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = load_settings()
    registry = Registry(settings.tracking_uri, settings.registry_uri)
    if registry.is_empty():
        seed_demo(settings, registry)
    model_path = local_model_path(MODEL_URI, settings, registry)
    results: dict[str, list[dict]] = {
        "plain": [],
        "plain+csv": [],
        "1 worker": [],
        "2 workers": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as work:
        folder = Path(work) / "in"
        folder.mkdir()
        paths = write_inputs(folder, args.rows, args.files)
        size_mb = sum(p.stat().st_size for p in paths) / 2**20
        print(
            f"{args.rows:,} rows, {args.files} CSV files, {size_mb:.0f} MB, {os.cpu_count()} CPUs"
        )
        for repeat in range(args.repeats):
            order = list(results)
            if repeat % 2:
                order.reverse()
            for name in order:
                if name == "plain":
                    figures = plain(model_path, paths)
                elif name == "plain+csv":
                    figures = plain(model_path, paths, Path(work) / f"plain-{repeat}.csv")
                else:
                    workers = 1 if name == "1 worker" else 2
                    output = Path(work) / f"out-{repeat}-{workers}"
                    figures = batch(settings, folder, workers, output)
                figures["rows_per_second"] = figures["rows"] / figures["seconds"]
                results[name].append(figures)
                print(f"  repeat {repeat + 1} {name}: {figures['rows_per_second']:,.0f} rows/s")
    base = statistics.median(r["rows_per_second"] for r in results["plain"])
    print(f"\nMedians of {args.repeats} repeats (CPU shared with other work):")
    print(
        f"{'variant':<10} {'rows/s':>10} {'ratio':>6} {'goal':>6} {'peak RSS':>9} {'load s':>7}"
        f" {'vs plain+csv':>12}"
    )
    for name, runs in results.items():
        rate = statistics.median(r["rows_per_second"] for r in runs)
        peak = statistics.median(r["peak_mb"] for r in runs)
        load = statistics.median(r.get("load_seconds", 0.0) for r in runs)
        goal = GOALS.get(int(name[0])) if name[0].isdigit() else None
        with_csv = statistics.median(r["rows_per_second"] for r in results["plain+csv"])
        goal_text = f">={goal}" if goal else ""
        print(
            f"{name:<10} {rate:>10,.0f} {rate / base:>6.2f} {goal_text:>6} {peak:>7.0f} MB "
            f"{load:>7.1f} {rate / with_csv:>12.2f}"
        )
    print(
        "ratio: against plain read_csv + predict (the issue's reference, which writes nothing);"
        "\nvs plain+csv: against the same loop writing the same predictions file with pandas."
    )


if __name__ == "__main__":
    main()
