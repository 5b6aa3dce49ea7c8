"""Where an endpoint front's CPU goes: one deployment server, several fronts before it.

Starts a local endpoint with one deployment (the demo iris classifier, `--runtime`), then, for
each `--source` (a checkout of this repository: the code of the front to measure, e.g. an
older commit unpacked with `git archive`), one more front process for the same endpoint on a
port of its own. Load from bench/endpoint.py's client (`--concurrency` keep-alive
connections) goes to each front in turn, interleaved over `--rounds`, so that noise falls on all
alike; it prints each front's throughput and CPU ms per request (its own process only). With
`--profile` each front then runs once more under cProfile and the functions that took the most
CPU are printed.

    .venv/bin/python bench/front_profile.py --runtime mlflow \
        --source new=. --source old=/tmp/front-main [--profile]

This prints figures; it is not a test. Everything it starts is stopped when it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from endpoint import NO_SECRETS, Running, one_row, throughput

from deploystudio import inference_server
from deploystudio.config import load_settings
from deploystudio.deployment.base import DeploymentState, Runtime
from deploystudio.deployment.invoke import request_body
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry

ENDPOINT = "profiled"
IRIS = "models:/iris-classifier/1"


def start_front(source: Path, db: Path, port: int, log: Path, profile: Path | None) -> psutil.Popen:
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "deploystudio.deployment.local.front", "--db", str(db)]
    command += ["--endpoint", ENDPOINT, "--port", str(port), "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONPATH": str(source)}
    with log.open("ab") as out:
        process = psutil.Popen(
            command, cwd=source, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"The front from {source} did not start:\n{log.read_text()}")


def stop(process: psutil.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except psutil.TimeoutExpired:
        process.kill()


def cpu(process: psutil.Popen) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="mlflow", choices=["mlflow", "azureml"])
    parser.add_argument("--source", action="append", default=[], help="label=checkout folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-wait-ms", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="then a cProfile run of each")
    args = parser.parse_args()
    sources = dict(item.split("=", 1) for item in args.source) or {"here": "."}
    root = Path(tempfile.mkdtemp(prefix="ds-front-profile-"))
    settings = load_settings(environ={"DEPLOYSTUDIO_HOME": str(root)}, secrets_path=NO_SECRETS)
    registry = Registry(settings.tracking_uri, settings.registry_uri)
    from deploystudio.demo import seed_demo

    seed_demo(settings, registry)
    target = LocalTarget(settings, registry=registry, start_timeout_seconds=180)
    runtime = Runtime(args.runtime)
    fronts: dict[str, psutil.Popen] = {}
    try:
        target.create_endpoint(ENDPOINT, {"auth_mode": "key"})
        batching = {}
        if args.max_batch_size > 1:
            batching = {"max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms}
        record = target.create_deployment(
            "blue", IRIS, ENDPOINT, {"runtime": runtime.value, "settings": batching}
        )
        if record.state is not DeploymentState.READY:
            raise SystemExit(f"{record.reason}\n{record.log_tail}")
        target.update_endpoint(ENDPOINT, {"traffic": {"blue": 100}})
        key = target.get_keys(ENDPOINT).primary
        body = request_body(one_row(local_model_path(IRIS, settings, registry)), None, runtime)
        db = target.store.path
        ports = {}
        for label, source in sources.items():
            ports[label] = inference_server.free_port()
            log = root / f"front-{label}.log"
            fronts[label] = start_front(Path(source).resolve(), db, ports[label], log, None)

        def running(label: str) -> Running:
            url = f"http://127.0.0.1:{ports[label]}/score"
            return Running(url, {"Authorization": f"Bearer {key}"}, body, 0.0, lambda: None)

        results: dict[str, list[tuple[float, float]]] = {label: [] for label in sources}
        for label in sources:
            throughput(running(label), 1.0, args.concurrency)  # warm-up
        for number in range(args.rounds):
            labels = list(sources)
            labels = labels[number % len(labels) :] + labels[: number % len(labels)]
            for label in labels:
                before = cpu(fronts[label])
                count, took = throughput(running(label), args.duration, args.concurrency)
                used = cpu(fronts[label]) - before
                results[label].append((count / took, used * 1000 / count))
        print(
            f"\n{args.runtime} runtime, concurrency {args.concurrency}, {args.rounds} rounds of "
            f"{args.duration:g} s, max_batch_size {args.max_batch_size}"
        )
        for label, rows in results.items():
            rate = statistics.median(r for r, _ in rows)
            front_ms = statistics.median(c for _, c in rows)
            print(f"  {label:<10} {rate:8.1f} req/s   front CPU {front_ms:6.3f} ms/req")
        for process in fronts.values():
            stop(process)
        fronts.clear()
        if args.profile:
            for label, source in sources.items():
                out = root / f"{label}.prof"
                port = ports[label] = inference_server.free_port()
                log = root / f"front-{label}-profiled.log"
                fronts[label] = start_front(Path(source).resolve(), db, port, log, out)
                count, _ = throughput(running(label), args.duration, args.concurrency)
                stop(fronts.pop(label))
                text = io.StringIO()
                stats = pstats.Stats(str(out), stream=text)
                stats.sort_stats("tottime").print_stats(22)
                print(f"\n== {label}: {count} requests under cProfile, by own time ==")
                print(text.getvalue().split("ncalls", 1)[-1][:5000])
    finally:
        for process in fronts.values():
            stop(process)
        target.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
