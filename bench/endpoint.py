"""Benchmark: a Deploy Studio local endpoint vs. the model servers it runs, on one model.

In one run, on the same model and machine, six ways to serve it:

  (a)  ds-azureml  a LocalTarget endpoint and deployment (Azure ML inference server with our
                   no-code scoring script), called through the endpoint's front with its key;
  (b)  mlflow      `mlflow models serve --env-manager local -m <model folder>` on 127.0.0.1;
  (c)  azmlinfsrv  the same inference server as (a), started directly (same script, same
                   gunicorn settings as the local target), without the front;
  (a') ds-mlflow   a LocalTarget deployment with runtime "mlflow" (MLflow's scoring server
                   behind the front), to compare with (b);
  (d)  ds-azml+b   (a) with adaptive batching (max_batch_size `--batch`, max_wait_ms
                   `--wait-ms`): the front gathers concurrent requests into one model call;
  (d') ds-mlfl+b   (a') with adaptive batching.

For each: time to ready (median of `--starts` starts; for (a)/(a') the deployment's creation
plus routing all traffic to it, i.e. until the scoring URI serves the model, with the front's
own start shown apart), p50/p99 latency of 1-row requests at concurrency 1 (`--requests`,
interleaved in blocks across the servers so a noisy machine penalises all alike), throughput
at concurrency 8 (`--rounds` rounds of `--duration` s, interleaved; one keep-alive
`http.client` connection per thread), and the peak RSS of the serving processes (summed over
the process tree: gunicorn/uvicorn master and workers, the `mlflow` CLI for (b), the front for
(a)/(a'); shared pages of forked workers count once per process).

Goals (issue 16), printed as ratios at the end: the front adds < 0.5 ms at p50 over the bare
server and keeps >= 0.95x its throughput, for both runtimes ((a) over (c), (a') over (b));
without batching our endpoint has >= 1.0x the throughput of (b) at concurrency 8 and a p50 <=
1.0x; with batching >= 2.0x the throughput of (b) and a p99 <= 1.0x; time to ready <= 0.8x of (b).

Run from the repository root (seeds the demo models into a temporary DEPLOYSTUDIO_HOME):

    .venv/bin/python bench/endpoint.py [--workers 1] [--starts 3] [--requests 400]
    .venv/bin/python bench/endpoint.py --model \
        /work/shared/fixtures/azureml-examples/sklearn-diabetes/model

This prints figures; it is not a test and asserts nothing. Every process it starts is stopped
when it ends (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# Set before MLflow is imported, which reads it at import time.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import pandas as pd
import psutil
from mlflow.models import Model

from deploystudio import inference_server
from deploystudio.config import Settings, load_settings
from deploystudio.customization.scoring_script import ScriptTemplate, generate_scoring_script
from deploystudio.deployment.base import DeploymentState, Runtime
from deploystudio.deployment.invoke import request_body
from deploystudio.deployment.local.servers import MODEL_FOLDER
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from deploystudio.worker.isolation import scrubbed_environment

HOST = "127.0.0.1"
DEMO_URI = "models:/iris-classifier/1"
CONCURRENCY = 8
WARM_UP_REQUESTS = 30
LATENCY_BLOCKS = 5
RSS_SAMPLE_SECONDS = 0.25
READY_TIMEOUT_SECONDS = 180.0
P50_ADDED_GOAL_MS = 0.5
THROUGHPUT_GOAL = 0.95
BATCH_THROUGHPUT_GOAL = 2.0
READY_GOAL = 0.8
NO_SECRETS = Path("/nonexistent/secrets.toml")


# -- the model and its request ------------------------------------------------------------------


def one_row(model_path: Path) -> pd.DataFrame:
    """The model's input example (or the Azure sample request beside its folder), first row."""
    example = Model.load(str(model_path)).load_input_example(str(model_path))
    if example is None:
        sample = model_path.parent / "sample-request.json"
        if not sample.is_file():
            raise SystemExit(f"{model_path} has no input example and no {sample.name} beside it.")
        table = json.loads(sample.read_text())["input_data"]
        example = pd.DataFrame(table["data"], columns=table["columns"])
    if not isinstance(example, pd.DataFrame):
        raise SystemExit("This benchmark sends a 1-row table: give a model with tabular input.")
    return example.head(1)


# -- the servers --------------------------------------------------------------------------------


@dataclass
class Running:
    """One started server, ready: where to send requests, and how to stop it."""

    url: str
    headers: dict[str, str]
    body: bytes
    ready_seconds: float
    stop: Callable[[], None]
    front_seconds: float | None = None


@dataclass
class Contender:
    key: str
    label: str
    start: Callable[[int], Running]
    ready: list[float] = field(default_factory=list)
    fronts: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    # CPU ms per request at concurrency 8: the whole tree, and the front's part of it.
    cpu_ms: list[float] = field(default_factory=list)
    front_cpu_ms: list[float] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    peak_rss: int = 0
    running: Running | None = None


def ds_starter(
    target: LocalTarget,
    model_uri: str,
    runtime: Runtime,
    workers: int,
    frame: pd.DataFrame,
    batching: dict[str, int] | None = None,
) -> Callable[[int], Running]:
    """(a), (a'), (d), (d'): a new endpoint and deployment per start, deleted by `stop`."""
    body = request_body(frame, None, runtime)
    prefix = f"ds-{runtime.value}{'-batch' if batching else ''}"

    def start(number: int) -> Running:
        name = f"{prefix}-{number}"
        started = time.perf_counter()
        endpoint = target.create_endpoint(name)
        front_seconds = time.perf_counter() - started
        stop = lambda: target.delete_endpoint(name)  # noqa: E731
        if endpoint.state is not DeploymentState.READY:
            stop()
            raise SystemExit(f"The front of {name} did not start: {endpoint.reason}")
        started = time.perf_counter()
        deployment = target.create_deployment(
            "blue",
            model_uri,
            name,
            {"runtime": runtime.value, "settings": {"instance_count": workers, **(batching or {})}},
        )
        if deployment.state is not DeploymentState.READY:
            stop()
            raise SystemExit(
                f"{name}/blue did not start: {deployment.reason}\n{deployment.log_tail}"
            )
        target.update_endpoint(name, {"traffic": {"blue": 100}})
        ready = time.perf_counter() - started
        endpoint = target.get_endpoint(name)
        key = target.get_keys(name).primary
        assert endpoint.scoring_uri is not None
        return Running(
            endpoint.scoring_uri,
            {"Authorization": f"Bearer {key}"},
            body,
            ready,
            stop,
            front_seconds,
        )

    return start


def serve_mlflow_cli(
    command: list[str], env: dict[str, str], folder: Path, port: int, body: bytes
) -> Running:
    """Run an `mlflow models serve` command in its own session until /ping answers; the time
    from the command to that answer is the start time."""
    started = time.perf_counter()
    with (folder / "server.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stop = lambda: stop_group(process)  # noqa: E731
    url = f"http://{HOST}:{port}"
    try:
        wait_answers(url + "/ping", process, folder / "server.log")
    except BaseException:
        stop()
        raise
    return Running(url + "/invocations", {}, body, time.perf_counter() - started, stop)


def mlflow_serve_starter(
    model_path: Path, workers: int, root: Path, frame: pd.DataFrame
) -> Callable[[int], Running]:
    """(b): `mlflow models serve --env-manager local`, the command a user would type."""
    body = request_body(frame, None, Runtime.MLFLOW)
    mlflow_cli = Path(sys.executable).with_name("mlflow")

    def start(number: int) -> Running:
        folder = root / str(number)
        folder.mkdir(parents=True)
        port = inference_server.free_port()
        # The same scrubbed environment our own servers get: the model's code runs in it.
        env = {**scrubbed_environment(), "PYTHONUNBUFFERED": "1"}
        # The CLI runs `uvicorn` from PATH, as in an activated virtual environment.
        env["PATH"] = os.pathsep.join([str(mlflow_cli.parent), env.get("PATH", "")])
        command = [str(mlflow_cli), "models", "serve", "--env-manager", "local"]
        command += ["-m", str(model_path), "-h", HOST, "-p", str(port), "-w", str(workers)]
        return serve_mlflow_cli(command, env, folder, port, body)

    return start


def azmlinfsrv_starter(
    model_path: Path, workers: int, root: Path, frame: pd.DataFrame
) -> Callable[[int], Running]:
    """(c): the inference server as the local target starts it (same script, staged model
    layout and gunicorn command), but called directly."""
    body = request_body(frame, None, Runtime.AZUREML)
    source = generate_scoring_script(ScriptTemplate.NO_CODE, model_path)

    def start(number: int) -> Running:
        folder = root / str(number)
        folder.mkdir(parents=True)
        script = folder / "score.py"
        script.write_text(source, encoding="utf-8")
        started = time.perf_counter()
        model_dir = inference_server.stage_model(
            model_path, folder / "azureml-models", folder_name=MODEL_FOLDER
        )
        handle = inference_server.start(script, model_dir, folder / "server.log", workers=workers)
        stop = lambda: inference_server.stop(handle)  # noqa: E731
        try:
            inference_server.wait_ready(handle, READY_TIMEOUT_SECONDS)
        except BaseException:
            stop()
            raise
        return Running(handle.score_url, {}, body, time.perf_counter() - started, stop)

    return start


def wait_answers(url: str, process: subprocess.Popen, log: Path) -> None:
    """Poll `url` as our own readiness checks do (every 0.1 s, 1 s probe timeout)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"{url} stopped before it was ready:\n{inference_server.log_tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError, TimeoutError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} was not ready within {READY_TIMEOUT_SECONDS:.0f} s")


def stop_group(process: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group (the CLI and its uvicorn), SIGKILL what is left after `grace`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # uvicorn workers left by the CLI, if any
    process.wait(10)


# -- peak RSS ------------------------------------------------------------------------------------


class RssSampler:
    """Sums the RSS of the processes working in each contender's folder, every 0.25 s, and keeps
    each sum's peak. The working folder finds a whole tree (workers inherit it, detached servers
    of the local target run in their deployment's folder), whoever its parent is."""

    def __init__(self, folders: dict[str, list[Path]]) -> None:
        self._folders = {key: [str(p.resolve()) for p in paths] for key, paths in folders.items()}
        self.peaks = dict.fromkeys(folders, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            sums = dict.fromkeys(self._folders, 0)
            for process in psutil.process_iter(["pid", "cwd", "memory_info"]):
                cwd, memory = process.info["cwd"], process.info["memory_info"]
                if process.info["pid"] == me or not cwd or memory is None:
                    continue
                for key, prefixes in self._folders.items():
                    if any(cwd == p or cwd.startswith(p + os.sep) for p in prefixes):
                        sums[key] += memory.rss
                        break
            for key, total in sums.items():
                self.peaks[key] = max(self.peaks[key], total)


# -- load ----------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection that reconnects when the server closes it (gunicorn's
    sync workers close after every answer, as they do for any client)."""

    def __init__(self, running: Running) -> None:
        url = urllib.parse.urlsplit(running.url)
        self._port, self._path = url.port, url.path
        self._body = running.body
        self._headers = {"Content-Type": "application/json", **running.headers}
        self._conn: http.client.HTTPConnection | None = None

    def post(self) -> bytes:
        for attempt in range(2):
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(HOST, self._port, timeout=30)
                self._conn.request("POST", self._path, self._body, self._headers)
                response = self._conn.getresponse()
                answer = response.read()
                if response.will_close:
                    self.close()
                if response.status != 200:
                    raise SystemExit(f"{self._path} answered {response.status}: {answer[:300]!r}")
                return answer
            except (ConnectionError, http.client.HTTPException):
                self.close()  # an idle keep-alive connection closed by the server: once more
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def latencies(running: Running, count: int) -> list[float]:
    client = Client(running)
    try:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            client.post()
            times.append(time.perf_counter() - started)
        return times
    finally:
        client.close()


def cpu_seconds(folders: list[Path]) -> tuple[float, float]:
    """CPU seconds used so far by the processes working under `folders`, and by those working
    in one of them itself: an endpoint's front (its deployments work in subfolders).

    On a shared machine CPU time per request moves far less than latency does, so it shows what
    the front costs even when other work slows every server down."""
    roots = [str(folder.resolve()) for folder in folders]
    total = fronts = 0.0
    for process in psutil.process_iter(["cwd", "cpu_times"]):
        cwd, times = process.info["cwd"], process.info["cpu_times"]
        if not cwd or times is None:
            continue
        if any(cwd == r or cwd.startswith(r + os.sep) for r in roots):
            used = times.user + times.system
            total += used
            fronts += used if cwd in roots else 0.0
    return total, fronts


def throughput(
    running: Running, seconds: float, concurrency: int = CONCURRENCY
) -> tuple[int, float]:
    """Requests answered by `concurrency` threads posting back to back, and the seconds."""
    # The clock starts when every thread has connected and sent one request.
    window: list[float] = []
    barrier = threading.Barrier(
        concurrency, action=lambda: window.append(time.perf_counter() + seconds)
    )

    def worker() -> int:
        client = Client(running)
        try:
            client.post()
            barrier.wait(timeout=120)  # a thread that failed breaks it for all: no hang
            done = 0
            while time.perf_counter() < window[0]:
                client.post()
                done += 1
            return done
        finally:
            client.close()

    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        total = sum(f.result() for f in futures)
    # Requests still in flight at the deadline finish after it: count their time too.
    started = window[0] - seconds
    return total, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rotated(items: list[Contender], turn: int) -> list[Contender]:
    shift = turn % len(items)
    return items[shift:] + items[:shift]


# -- the run -------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, home: Path) -> tuple[Settings, Registry | None, str, Path]:
    """Settings over a temporary studio folder; the model's URI and local folder."""
    settings = load_settings(environ={"DEPLOYSTUDIO_HOME": str(home)}, secrets_path=NO_SECRETS)
    if args.model is not None:
        path = args.model.resolve()
        return settings, None, str(path), local_model_path(str(path), settings)
    # Imported here: training the demo models needs scikit-learn, which --model does not.
    from deploystudio.demo import seed_demo

    registry = Registry(settings.tracking_uri, settings.registry_uri)
    print(f"Seeding the demo models into {home} ...", flush=True)
    started = time.perf_counter()
    seed_demo(settings, registry)
    print(f"  seeded in {time.perf_counter() - started:.0f} s (not part of the figures)")
    return settings, registry, DEMO_URI, local_model_path(DEMO_URI, settings, registry)


def run(args: argparse.Namespace, root: Path) -> list[Contender]:
    home = args.home.resolve() if args.home else root / "home"
    settings, registry, model_uri, model_path = prepare(args, home)
    frame = one_row(model_path)
    print(f"Model: {model_uri} ({model_path}); {args.workers} server worker(s) each")
    target = LocalTarget(settings, registry=registry, start_timeout_seconds=READY_TIMEOUT_SECONDS)
    w = args.workers
    batch = {"max_batch_size": args.batch, "max_wait_ms": args.wait_ms}
    contenders = [
        Contender("a", "ds-azureml", ds_starter(target, model_uri, Runtime.AZUREML, w, frame)),
        Contender("b", "mlflow", mlflow_serve_starter(model_path, w, root / "mlflow", frame)),
        Contender("c", "azmlinfsrv", azmlinfsrv_starter(model_path, w, root / "azml", frame)),
        Contender("a'", "ds-mlflow", ds_starter(target, model_uri, Runtime.MLFLOW, w, frame)),
        Contender(
            "d", "ds-azml+b", ds_starter(target, model_uri, Runtime.AZUREML, w, frame, batch)
        ),
        Contender(
            "d'", "ds-mlfl+b", ds_starter(target, model_uri, Runtime.MLFLOW, w, frame, batch)
        ),
    ]
    endpoints = home / "endpoints"
    folders = {
        "a": [endpoints / f"ds-azureml-{i}" for i in range(args.starts)],
        "b": [root / "mlflow"],
        "c": [root / "azml"],
        "a'": [endpoints / f"ds-mlflow-{i}" for i in range(args.starts)],
        "d": [endpoints / f"ds-azureml-batch-{i}" for i in range(args.starts)],
        "d'": [endpoints / f"ds-mlflow-batch-{i}" for i in range(args.starts)],
    }
    for contender in contenders:
        contender.folders = folders[contender.key]
    try:
        with RssSampler(folders) as sampler:
            measure(contenders, args)
        for contender in contenders:
            contender.peak_rss = sampler.peaks[contender.key]
    finally:
        for contender in contenders:
            if contender.running is not None:
                with contextlib.suppress(Exception):
                    contender.running.stop()
                contender.running = None
        stopped = target.stop_all()
        if stopped:
            print(f"Stopped what was left: {stopped}")
    return contenders


def measure(contenders: list[Contender], args: argparse.Namespace) -> None:
    # Starts one at a time (a start is CPU-bound: imports and the model load); each server but
    # the last start of each is stopped again, so at most one of each runs at once.
    for number in range(args.starts):
        for contender in rotated(contenders, number):
            if contender.running is not None:
                contender.running.stop()
                contender.running = None
            contender.running = contender.start(number)
            contender.ready.append(contender.running.ready_seconds)
            if contender.running.front_seconds is not None:
                contender.fronts.append(contender.running.front_seconds)
            print(
                f"  start {number + 1}: {contender.label} ready in "
                f"{contender.running.ready_seconds:.2f} s",
                flush=True,
            )
    live = {c.key: c.running for c in contenders}
    assert all(live.values())
    for contender in contenders:
        latencies(contender.running, WARM_UP_REQUESTS)  # type: ignore[arg-type]
    check_answers(live)  # type: ignore[arg-type]
    per_block = max(1, args.requests // LATENCY_BLOCKS)
    for block in range(LATENCY_BLOCKS):
        for contender in rotated(contenders, block):
            contender.latencies += latencies(contender.running, per_block)  # type: ignore[arg-type]
    print(f"  latency: {per_block * LATENCY_BLOCKS} requests each, done", flush=True)
    for round_ in range(args.rounds):
        for contender in rotated(contenders, round_):
            cpu_before, front_before = cpu_seconds(contender.folders)
            count, took = throughput(contender.running, args.duration)  # type: ignore[arg-type]
            cpu_after, front_after = cpu_seconds(contender.folders)
            contender.throughputs.append(count / took)
            contender.cpu_ms.append((cpu_after - cpu_before) * 1000 / count)
            contender.front_cpu_ms.append((front_after - front_before) * 1000 / count)
    print(f"  throughput: {args.rounds} rounds of {args.duration:.0f} s each, done", flush=True)


def check_answers(live: dict[str, Running]) -> None:
    """All must predict the same: the azureml ones answer a bare list, MLflow's server
    {"predictions": [...]}. A mismatch means the comparison is not of like with like."""

    def predictions(running: Running) -> object:
        client = Client(running)
        try:
            answer = json.loads(client.post())
        finally:
            client.close()
        return answer["predictions"] if isinstance(answer, dict) else answer

    answers = {key: predictions(running) for key, running in live.items()}
    if len({json.dumps(a) for a in answers.values()}) != 1:
        print(f"WARNING: the servers answered differently: {answers}")


def report(contenders: list[Contender], args: argparse.Namespace) -> None:
    by_key = {c.key: c for c in contenders}
    header = (
        f"{'':4} {'server':<11} | {'ready s':>7} | {'front s':>7} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'req/s @8':>8} | {'CPU ms/req':>10} | {'front CPU':>9} | "
        f"{'peak RSS MB':>11}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for c in contenders:
        front = f"{statistics.median(c.fronts):>7.2f}" if c.fronts else f"{'-':>7}"
        front_cpu = f"{statistics.median(c.front_cpu_ms):>9.2f}" if c.fronts else f"{'-':>9}"
        print(
            f"({c.key:<2}) {c.label:<11} | {statistics.median(c.ready):>7.2f} | {front} | "
            f"{percentile(c.latencies, 0.5) * 1000:>7.2f} | "
            f"{percentile(c.latencies, 0.99) * 1000:>7.2f} | "
            f"{statistics.median(c.throughputs):>8.1f} | {statistics.median(c.cpu_ms):>10.2f} | "
            f"{front_cpu} | {c.peak_rss / 2**20:>11.0f}"
        )

    def ratio(ds: Contender, base: Contender) -> tuple[float, float, float, float]:
        """p50 added (ms), throughput, p50 and p99 ratios of `ds` over `base`."""
        p50_ds, p50_base = percentile(ds.latencies, 0.5), percentile(base.latencies, 0.5)
        p99 = percentile(ds.latencies, 0.99) / percentile(base.latencies, 0.99)
        rate = statistics.median(ds.throughputs) / statistics.median(base.throughputs)
        return (p50_ds - p50_base) * 1000, rate, p50_ds / p50_base, p99

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    a, b, c, a2 = by_key["a"], by_key["b"], by_key["c"], by_key["a'"]
    print("\nGoals of issue 16 (ratios in this run):")
    for ds, bare in ((a, c), (a2, b)):
        added, rate, _, p99 = ratio(ds, bare)
        cpu = statistics.median(ds.cpu_ms) - statistics.median(bare.cpu_ms)
        print(
            f"  front ({ds.key}) over ({bare.key}): p50 {added:+.2f} ms "
            f"(< {P50_ADDED_GOAL_MS} ms: {verdict(added < P50_ADDED_GOAL_MS)}); throughput "
            f"{rate:.2f}x (>= {THROUGHPUT_GOAL}x: {verdict(rate >= THROUGHPUT_GOAL)}); "
            f"p99 {p99:.2f}x; CPU per request {cpu:+.2f} ms"
        )
    for ds in (a, a2):
        _, rate, p50, p99 = ratio(ds, b)
        print(
            f"  no batching ({ds.key}) over (b): throughput {rate:.2f}x (>= 1.0x: "
            f"{verdict(rate >= 1.0)}); p50 {p50:.2f}x (<= 1.0x: {verdict(p50 <= 1.0)}); "
            f"p99 {p99:.2f}x"
        )
    for ds in (by_key["d"], by_key["d'"]):
        _, rate, p50, p99 = ratio(ds, b)
        print(
            f"  batching ({ds.key}) over (b): throughput {rate:.2f}x (>= "
            f"{BATCH_THROUGHPUT_GOAL}x: {verdict(rate >= BATCH_THROUGHPUT_GOAL)}); p99 {p99:.2f}x "
            f"(<= 1.0x: {verdict(p99 <= 1.0)}); p50 {p50:.2f}x"
        )
    base = statistics.median(b.ready)
    for ds in (a, a2):
        ready, front = statistics.median(ds.ready), statistics.median(ds.fronts)
        print(
            f"  time to ready ({ds.key}) {ready / base:.2f}x of (b) (<= {READY_GOAL}x: "
            f"{verdict(ready / base <= READY_GOAL)}); {(ready + front) / base:.2f}x with the "
            "front's own start"
        )
    print(
        f"\nMedians of {args.starts} starts and {args.rounds} throughput rounds; "
        f"{len(a.latencies)} latency requests each in {LATENCY_BLOCKS} interleaved blocks "
        f"after {WARM_UP_REQUESTS} warm-ups; {args.workers} worker(s); {os.cpu_count()} CPUs."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an MLflow model folder (default: demo iris)")
    parser.add_argument("--workers", type=int, default=1, help="server workers, all alike")
    parser.add_argument("--starts", type=int, default=3, help="starts per server (time to ready)")
    parser.add_argument("--requests", type=int, default=400, help="latency requests per server")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per server")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per throughput round")
    parser.add_argument("--batch", type=int, default=CONCURRENCY, help="max_batch_size of (d)")
    parser.add_argument("--wait-ms", type=int, default=0, help="max_wait_ms of (d)")
    parser.add_argument(
        "--home", type=Path, help="a studio folder to use (and seed) instead of a temporary one"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="ds-bench-endpoint-"))
    try:
        contenders = run(args, root)
        report(contenders, args)
    finally:
        if args.keep:
            print(f"Logs and data kept in {root}")
        else:
            remove_tree(root)
    return 0


def remove_tree(root: Path) -> None:
    # Staged copies of a read-only model folder (the shared fixtures) are read-only too.
    def writable(function: Callable, path: str, _exc_info: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            function(path)

    shutil.rmtree(root, onerror=writable)  # Python 3.11: onexc comes in 3.12


if __name__ == "__main__":
    raise SystemExit(main())
