"""Benchmark: a local endpoint in the model's own environment vs. `mlflow models serve
--env-manager uv`, cold and warm, and vs. today's start in the app's environment.

In one run, on one model that needs its own environment (a LogisticRegression logged at bench
time with `pip_requirements` pinning another scikit-learn than the app's, and the app's MLflow,
NumPy and pandas):

  ds-model     a LocalTarget deployment, runtime "mlflow", setting environment = "model": plans
               the environment (`uv pip compile`), builds it with uv (venv, `uv pip sync`,
               import check) unless it is there, then starts MLflow's scoring server in it;
  mlflow-uv    `mlflow models serve --env-manager uv -m <model folder>` on 127.0.0.1 (builds a
               virtualenv under MLFLOW_ENV_ROOT with the uv binary on PATH, unless it is there);
  ds-app       a LocalTarget deployment, runtime "mlflow", environment = "app" (today's start).

Cold: each repeat starts from an empty uv cache (UV_CACHE_DIR a fresh folder) and an empty
environment root (our data folder's `environments/`, MLflow's MLFLOW_ENV_ROOT). Warm: the
environment of the last cold repeat is there (and its uv cache). Time to ready is, for ours,
the deployment's creation plus routing all traffic to it (the front is started before, apart),
for MLflow's, from the command to the first 200 on /ping. The peers alternate within each repeat
(the first one changes every repeat) and the figures are medians: the machine is shared.

Also the cached environment lookup (`PlanInputs.from_folder` + `lookup`, what a deploy does
before it starts a server), median of `--lookups` calls.

Goals (issue 19): cold build <= 1.0x MLflow's uv env manager; warm start within 1.2x of the
app-environment start; cached lookup under 50 ms.

Run from the repository root (needs PyPI, or the package index your pip/uv settings name):

    .venv/bin/python bench/environments.py [--cold 3] [--warm 5] [--sklearn 1.5.2] [--keep]

This prints figures; it is not a test and asserts nothing. Every process it starts is stopped
when it ends (also on Ctrl-C); the temporary folder goes unless --keep.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Set before MLflow is imported, which reads it at import time.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import numpy
import pandas as pd
from endpoint import (  # bench/endpoint.py
    Client,
    Running,
    remove_tree,
    serve_mlflow_cli,
)
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from deploystudio import inference_server
from deploystudio.config import load_settings
from deploystudio.deployment.base import DeploymentState, Runtime
from deploystudio.deployment.invoke import request_body
from deploystudio.deployment.local.servers import ENVIRONMENT_SETTING
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.environments import PlanInputs, environments_root, lookup, plan_environment
from deploystudio.environments.uv import uv_environment

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 900.0  # a cold build downloads a few hundred MB on a slow day
NO_SECRETS = Path("/nonexistent/secrets.toml")
COLD_GOAL = 1.0
WARM_GOAL = 1.2
LOOKUP_GOAL_MS = 50.0


# -- the model ----------------------------------------------------------------------------------


def save_model(folder: Path, sklearn_version: str) -> pd.DataFrame:
    """A LogisticRegression on iris, saved with requirements that differ from the app's in
    scikit-learn only; returns a 1-row request."""
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    model = LogisticRegression(max_iter=500).fit(frame, data.target)
    pins = {name: __import__(name).__version__ for name in ("mlflow", "numpy", "pandas")}
    requirements = [f"{name}=={version}" for name, version in pins.items()]
    requirements += [f"scikit-learn=={sklearn_version}"]
    # cloudpickle: skops refuses objects across scikit-learn versions it does not know; a
    # LogisticRegression's attributes are plain arrays, read alike by older versions.
    requirements += [f"cloudpickle=={__import__('cloudpickle').__version__}"]
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format="cloudpickle",
        pip_requirements=requirements,
        input_example=frame.head(2),
    )
    return frame.head(1)


# -- the contenders -----------------------------------------------------------------------------


@dataclass
class Contender:
    label: str
    start: Callable[[str], Running]  # the argument names the start (folders, deployments)
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def ds_starter(
    target: LocalTarget, model_uri: str, environment: str, frame: pd.DataFrame
) -> Callable[[str], Running]:
    """A new endpoint (its front started apart, not timed) and a deployment in `environment`."""
    body = request_body(frame, None, Runtime.MLFLOW)

    def start(name: str) -> Running:
        endpoint = target.create_endpoint(name)
        stop = lambda: target.delete_endpoint(name)  # noqa: E731
        if endpoint.state is not DeploymentState.READY:
            stop()
            raise SystemExit(f"The front of {name} did not start: {endpoint.reason}")
        settings = {"instance_count": 1, ENVIRONMENT_SETTING: environment}
        started = time.perf_counter()
        deployment = target.create_deployment(
            "blue", model_uri, name, {"runtime": Runtime.MLFLOW.value, "settings": settings}
        )
        if deployment.state is not DeploymentState.READY:
            stop()
            raise SystemExit(
                f"{name}/blue did not start: {deployment.reason}\n{deployment.log_tail}"
            )
        target.update_endpoint(name, {"traffic": {"blue": 100}})
        ready = time.perf_counter() - started
        url = target.get_endpoint(name).scoring_uri
        assert url is not None
        key = target.get_keys(name).primary
        return Running(url, {"Authorization": f"Bearer {key}"}, body, ready, stop)

    return start


def mlflow_uv_starter(
    model_path: Path, root: Path, env_root: Callable[[], Path], frame: pd.DataFrame
) -> Callable[[str], Running]:
    """`mlflow models serve --env-manager uv`, the command a user would type, with the same uv
    settings our builds get (index, find-links, certificate, no Python downloads)."""
    body = request_body(frame, None, Runtime.MLFLOW)
    bin_folder = Path(sys.executable).parent  # mlflow, uv and uvicorn

    def start(name: str) -> Running:
        folder = root / name
        folder.mkdir(parents=True)
        port = inference_server.free_port()
        env = {**uv_environment(), "PYTHONUNBUFFERED": "1", "MLFLOW_ENV_ROOT": str(env_root())}
        env["PATH"] = os.pathsep.join([str(bin_folder), env.get("PATH", "")])
        command = [str(bin_folder / "mlflow"), "models", "serve", "--env-manager", "uv"]
        command += ["-m", str(model_path), "-h", HOST, "-p", str(port), "-w", "1"]
        return serve_mlflow_cli(command, env, folder, port, body)

    return start


# -- the run ------------------------------------------------------------------------------------


def timed_start(contender: Contender, name: str, into: list[float], before: float = 0.0) -> float:
    """Start, check one prediction, stop; record `before` (time already spent on this start)
    plus the time to ready."""
    name = f"{contender.label}-{name}"  # endpoint and folder names never reused in a run
    running = contender.start(name)
    client = Client(running)
    try:
        client.post()  # it serves the model, not just /ping
    finally:
        client.close()
        running.stop()
    into.append(before + running.ready_seconds)
    print(f"  {name}: ready in {into[-1]:.2f} s", flush=True)
    return running.ready_seconds


def uv_breakdown(log: str) -> str:
    """uv's own summary lines (resolve, prepare = download/build, install) from a log."""
    wanted = re.compile(r"(Resolved|Prepared|Installed|Audited) \d+ packages? in [\d.]+m?s")
    return "; ".join(m.group(0) for m in wanted.finditer(log))


def run(args: argparse.Namespace, root: Path) -> tuple[list[Contender], list[float]]:
    home = root / "home"
    settings = load_settings(environ={"DEPLOYSTUDIO_HOME": str(home)}, secrets_path=NO_SECRETS)
    model_path = root / "model"
    frame = save_model(model_path, args.sklearn)
    print(
        f"Model: {model_path} (scikit-learn=={args.sklearn}; the app has "
        f"{__import__('sklearn').__version__}), numpy {numpy.__version__}",
        flush=True,
    )
    target = LocalTarget(settings, start_timeout_seconds=READY_TIMEOUT_SECONDS)
    mlflow_envs = {"root": root / "mlflow-envs-0"}
    ours = Contender("ds-model", ds_starter(target, str(model_path), "model", frame))
    theirs = Contender(
        "mlflow-uv",
        mlflow_uv_starter(model_path, root / "mlflow", lambda: mlflow_envs["root"], frame),
    )
    app = Contender("ds-app", ds_starter(target, str(model_path), "app", frame))
    ours_envs = environments_root(home)
    try:
        for number in range(args.cold):
            order = [ours, theirs] if number % 2 == 0 else [theirs, ours]
            for contender in order:
                cache = root / f"uv-cache-{contender.label}-{number}"
                cache.mkdir()
                os.environ["UV_CACHE_DIR"] = str(cache)  # read by uv_environment(), both sides
                if contender is ours:
                    shutil.rmtree(ours_envs, ignore_errors=True)
                    # The plan (`uv pip compile`), timed apart: the deployment then reads it
                    # from the plan cache, as a second deploy would. Both count in the cold time.
                    started = time.perf_counter()
                    plan_environment(PlanInputs.from_folder(model_path), ours_envs)
                    planned = time.perf_counter() - started
                    ready = timed_start(ours, f"cold-{number}", ours.cold, before=planned)
                    ours.notes.append(our_build_summary(ours_envs, planned, ready))
                else:
                    mlflow_envs["root"] = root / f"mlflow-envs-{number}"
                    timed_start(theirs, f"cold-{number}", theirs.cold)
                    log = root / "mlflow" / f"mlflow-uv-cold-{number}" / "server.log"
                    theirs.notes.append(mlflow_build_summary(log.read_text(errors="replace")))
                if number:  # only the last repeat's cache is used again (warm)
                    shutil.rmtree(root / f"uv-cache-{contender.label}-{number - 1}", True)
        for number in range(args.warm):
            order = [ours, theirs, app]
            order = order[number % 3 :] + order[: number % 3]
            for contender in order:
                timed_start(contender, f"warm-{number}", contender.warm)
        inputs_and_lookup = lookup_times(model_path, home, args.lookups)
    finally:
        stopped = target.stop_all()
        if stopped:
            print(f"Stopped what was left: {stopped}")
    return [ours, theirs, app], inputs_and_lookup


def our_build_summary(envs: Path, planned: float, ready: float) -> str:
    """Where a cold start went: the plan, the build (venv to import check, from ready.json,
    with uv's own lines), and the rest of the deployment (the environment's MLflow asked for
    its serving command, the server's start)."""
    for ready_file in envs.glob("*/ready.json"):
        built = json.loads(ready_file.read_text())["seconds"]
        log = (ready_file.parent / "build.log").read_text(errors="replace")
        return (
            f"plan {planned:.1f} s + venv/sync/import check {built:.1f} s + server start "
            f"{ready - built:.1f} s [{uv_breakdown(log)}]"
        )
    return "no environment built"


def mlflow_build_summary(log: str) -> str:
    """Where MLflow's cold start went, from its log's timestamps (whole seconds)."""
    stamps = {}
    for line in log.splitlines():
        found = re.match(r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) INFO", line)
        if not found:
            continue
        when = time.mktime(time.strptime(found.group(1), "%Y/%m/%d %H:%M:%S"))
        if "Creating a new environment" in line:
            stamps.setdefault("created", when)
        elif "python -c" in line:
            stamps.setdefault("built", when)
    if len(stamps) < 2:
        return f"[{uv_breakdown(log)}]"
    built = stamps["built"] - stamps["created"]
    return f"venv/install about {built:.0f} s, then the server's start [{uv_breakdown(log)}]"


def lookup_times(model_path: Path, home: Path, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        found = lookup(PlanInputs.from_folder(model_path), home)
        times.append(time.perf_counter() - started)
        if found is None:
            raise SystemExit("The cached lookup found no environment after the builds.")
    return times


# -- the report ---------------------------------------------------------------------------------


def report(contenders: list[Contender], lookups: list[float], args: argparse.Namespace) -> None:
    ours, theirs, app = contenders
    header = f"{'':11} | {'':5} | {'median s':>8} | {'min s':>7} | {'max s':>7} | {'n':>2}"
    print("\n" + header + "\n" + "-" * len(header))
    for contender in contenders:
        for kind, values in (("cold", contender.cold), ("warm", contender.warm)):
            if values:
                print(
                    f"{contender.label:<11} | {kind:<5} | {statistics.median(values):>8.2f} | "
                    f"{min(values):>7.2f} | {max(values):>7.2f} | {len(values):>2}"
                )
    ms = [t * 1000 for t in lookups]
    print(
        f"{'lookup':<11} | {'':5} | {statistics.median(ms):>6.2f}ms | {min(ms):>5.2f}ms | "
        f"{max(ms):>5.2f}ms | {len(ms):>2}"
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    cold = statistics.median(ours.cold) / statistics.median(theirs.cold)
    warm = statistics.median(ours.warm) / statistics.median(app.warm)
    warm_mlflow = statistics.median(ours.warm) / statistics.median(theirs.warm)
    lookup_ms = statistics.median(ms)
    print()
    print(
        f"cold: ds-model / mlflow-uv = {cold:.2f}x (goal <= {COLD_GOAL:.1f}x: "
        f"{verdict(cold <= COLD_GOAL)})"
    )
    print(
        f"warm: ds-model / ds-app = {warm:.2f}x (goal <= {WARM_GOAL:.1f}x: "
        f"{verdict(warm <= WARM_GOAL)}); ds-model / mlflow-uv = {warm_mlflow:.2f}x"
    )
    print(
        f"cached lookup: {lookup_ms:.2f} ms (goal < {LOOKUP_GOAL_MS:.0f} ms: "
        f"{verdict(lookup_ms < LOOKUP_GOAL_MS)})"
    )
    print("\nCold builds, per repeat:")
    for number, (mine, other) in enumerate(zip(ours.notes, theirs.notes, strict=True)):
        print(f"  {number}: ds-model {mine}\n     mlflow-uv {other or 'no uv summary in its log'}")
    print(
        f"\nMedians of {args.cold} cold and {args.warm} warm starts each, peers alternating; "
        f"{args.lookups} lookups; {os.cpu_count()} CPUs, shared (timings are noisy)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=3, help="cold starts per peer")
    parser.add_argument("--warm", type=int, default=5, help="warm starts per peer")
    parser.add_argument("--lookups", type=int, default=50, help="cached lookups timed")
    parser.add_argument(
        "--sklearn", default="1.5.2", help="the scikit-learn the model pins (not the app's)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    if args.cold < 1 or args.warm < 1:
        parser.error("--cold and --warm must be at least 1")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="ds-bench-environments-"))
    try:
        contenders, lookups = run(args, root)
        report(contenders, lookups, args)
    finally:
        if args.keep:
            print(f"Logs and data kept in {root}")
        else:
            remove_tree(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
