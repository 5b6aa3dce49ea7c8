"""A hostile model run through every path that runs model code: what it could not read.

The model (a `mlflow.pyfunc.PythonModel`, logged and registered in the test registry) tries, in
`load_context` and again in `predict`, to read the deployment store, the MLflow store, a
`.streamlit/secrets.toml`, a file in a fake user home, to list the data folder, to read the
app's secret variables, and to find them in any process's /proc/PID/environ (a decoy process
and the CLI hold them there). It answers with what it got, one report per row. Each path must
give it nothing: the preview worker, scoring-script validation in the inference server, a local
endpoint's deployment on each runtime, a batch job, and the CLI's `predict`.

One data folder, one registered model and one local endpoint for the whole module.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from deploystudio.customization.scoring_script import (
    ScriptTemplate,
    generate_scoring_script,
    validate_scoring_script,
)
from deploystudio.deployment.batch.jobs import start_batch_job, wait_for_batch_job
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.mlflow_scope import using_registry
from deploystudio.payloads import ModelInput
from deploystudio.prediction import local_model_path
from deploystudio.worker.process import PredictionWorker
from tests.reliability.figures import FIGURES

SUITE = "hostile model"
MARKER = "HOSTILE-MARKER"
# What the finding saw reach model code; each value carries the marker.
SECRETS = {
    "DATABASE_URL": f"postgresql://app:{MARKER}-db@db.internal/prod",
    "OPENAI_KEY": f"sk-{MARKER}-openai",
    "IDENTITY_HEADER": f"{MARKER}-identity",
    "PIP_INDEX_URL": f"https://ci:{MARKER}-pip@pypi.internal/simple",
    "SSH_AUTH_SOCK": f"/tmp/ssh-{MARKER}/agent.1",
    "GH_PAT": f"ghp_{MARKER}",
    "SENTRY_DSN": f"https://{MARKER}@sentry.internal/1",
    "MLFLOW_REGISTRY_URI": f"https://admin:{MARKER}-mlflow@mlflow.internal",
}
ROWS = pd.DataFrame({"x": [1.0, 2.0]})

MODEL_CODE = '''
import json
import os

import mlflow
import pandas as pd


def probe(config):
    """What this model could get of everything it was told to try."""
    found = {}
    for name, path in config["files"].items():
        try:
            with open(path, "rb") as handle:
                found[name] = handle.read(200).decode("latin-1")
        except OSError:
            found[name] = None
    for name, path in config["folders"].items():
        try:
            found[name] = sorted(os.listdir(path))
        except OSError:
            found[name] = None
    for name in config["variables"]:
        found[name] = os.environ.get(name)
    holders = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if config["marker"].encode() in handle.read():
                        holders.append(entry)
            except OSError:
                pass
    found["another process's /proc/PID/environ"] = holders or None
    return found


class Hostile(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.config = context.model_config
        self.at_load = probe(self.config)

    def predict(self, context, model_input, params=None):
        report = json.dumps({"load": self.at_load, "predict": probe(self.config)})
        return pd.DataFrame({"report": [report] * len(model_input)})


mlflow.models.set_model(Hostile())
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile-studio")


@pytest.fixture(scope="module")
def secrets_in_environment():
    """The app's environment holds the secrets, as the finding's did; and so does the
    environment of a decoy process, as a user's shell would."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        decoy = subprocess.Popen(["sleep", "600"], env={**os.environ})
        try:
            yield
        finally:
            decoy.kill()
            decoy.wait()


@pytest.fixture(scope="module")
def target(local_settings, registry, home, secrets_in_environment):
    target = LocalTarget(local_settings, registry=registry, start_timeout_seconds=120)
    endpoint = target.create_endpoint("hostile")
    assert endpoint.state.value == "ready", endpoint.reason
    try:
        yield target
    finally:
        target.stop_all()


@pytest.fixture(scope="module")
def probes(local_settings, settings, home, tmp_path_factory, target) -> dict[str, Any]:
    """What the model tries, each target checked here to exist and be readable by the app."""
    outside = tmp_path_factory.mktemp("outside")
    secrets_file = outside / "repo" / ".streamlit" / "secrets.toml"
    home_file = outside / "user-home" / ".config" / "gh" / "hosts.yml"
    for path in (secrets_file, home_file):
        path.parent.mkdir(parents=True)
        path.write_text(f'token = "{MARKER}-file"\n')
    mlflow_db = Path(settings.tracking_uri.removeprefix("sqlite:///"))
    files = {
        "deployments.db": str(home / "deployments.db"),
        "mlflow.db": str(mlflow_db),
        "secrets.toml": str(secrets_file),
        "a file in the user's home": str(home_file),
    }
    for path in files.values():
        assert Path(path).read_bytes(), path  # there, and readable by the app
    return {
        "files": files,
        "folders": {"the data folder": str(home), "the user's home": str(home_file.parents[2])},
        "variables": list(SECRETS),
        "marker": MARKER,
    }


@pytest.fixture(scope="module")
def model_uri(local_settings, probes, tmp_path_factory) -> str:
    code = tmp_path_factory.mktemp("hostile-code") / "hostile_model.py"
    code.write_text(textwrap.dedent(MODEL_CODE))
    # An experiment whose artifacts go to the data folder (the default one's go to ./mlruns).
    client = mlflow.MlflowClient(local_settings.tracking_uri, local_settings.registry_uri)
    experiment = client.create_experiment(
        "hostile", artifact_location=(local_settings.home / "artifacts").as_uri()
    )
    with (
        using_registry(local_settings.tracking_uri, local_settings.registry_uri),
        mlflow.start_run(experiment_id=experiment),
    ):
        info = mlflow.pyfunc.log_model(
            name="hostile",
            python_model=str(code),
            model_config=probes,
            input_example=ROWS,
            registered_model_name="hostile-model",
        )
    return f"models:/hostile-model/{info.registered_model_version}"


@pytest.fixture(scope="module")
def model_path(model_uri, local_settings, registry) -> Path:
    return local_model_path(model_uri, local_settings, registry)


@pytest.fixture(scope="module", autouse=True)
def _measured():
    FIGURES.measured(SUITE, "cases tried", "secret hits")


def reports(answer: Any) -> list[dict]:
    """The model's reports found anywhere in an answer (a frame, JSON, nested lists and dicts)."""
    if isinstance(answer, pd.DataFrame):
        return reports(answer.to_dict(orient="records"))
    if isinstance(answer, dict):
        return [r for value in answer.values() for r in reports(value)]
    if isinstance(answer, list):
        return [r for value in answer for r in reports(value)]
    if isinstance(answer, str) and answer.startswith('{"load"'):
        return [json.loads(answer)]
    return []


def assert_got_nothing(path: str, answer: Any, probes: dict) -> None:
    found = reports(answer)
    assert found, f"{path}: no report from the model in {str(answer)[:500]}"
    expected = {*probes["files"], *probes["folders"], *probes["variables"]}
    got = {}
    for report in found:
        for phase in ("load", "predict"):
            assert expected <= set(report[phase]), report[phase]
            for probe, value in report[phase].items():
                FIGURES.add(SUITE, "cases tried")
                if value is not None:
                    FIGURES.add(SUITE, "secret hits")
                    got[f"{phase}: {probe}"] = value
    assert not got, f"{path}: the model got {got}"
    assert MARKER not in json.dumps(found)


def test_preview_worker(model_path, probes, home, secrets_in_environment):
    worker = PredictionWorker(home / "logs" / "prediction-worker.log", timeout_seconds=120)
    try:
        prediction = worker.predict(model_path, ModelInput(ROWS))
    finally:
        worker.stop()
    assert_got_nothing("preview worker", prediction.output, probes)


def test_scoring_script_validation(model_path, probes, home, secrets_in_environment):
    script = generate_scoring_script(ScriptTemplate.NO_CODE, model_path)
    body = {"input_data": {"columns": ["x"], "data": [[1.0], [2.0]]}}
    result = validate_scoring_script(script, model_path, body, home / "work" / "customize")
    assert result.ok, f"{result.message}\n{result.log_tail}"
    assert_got_nothing("scoring-script validation", result.response, probes)


@pytest.mark.parametrize("runtime", ["azureml", "mlflow"])
def test_deployed_endpoint(target, model_uri, probes, runtime):
    name = f"hostile-{runtime}"
    deployment = target.create_deployment(name, model_uri, "hostile", {"runtime": runtime})
    try:
        assert deployment.state.value == "ready", (deployment.reason, deployment.log_tail)
        answer = target.predict(name, inputs=ROWS, endpoint="hostile")
    finally:
        with contextlib.suppress(Exception):
            target.delete_deployment(name, endpoint="hostile")
    assert_got_nothing(f"local endpoint ({runtime})", answer, probes)


def test_batch_job(local_settings, registry, model_uri, probes, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    ROWS.to_csv(inputs / "rows.csv", index=False)
    job = start_batch_job(
        local_settings, model_uri, inputs, restrict_input=False, registry=registry
    )
    job = wait_for_batch_job(local_settings, job.id, timeout_seconds=300)
    assert job.state.value == "completed", job.reason
    predictions = pd.read_csv(job.output_path)
    assert_got_nothing("batch job", predictions, probes)


def test_cli_predict(local_settings, settings, model_uri, probes, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_split": ROWS.to_dict(orient="split")}))
    env = {
        **os.environ,  # with the secrets, so the CLI's own /proc/PID/environ holds them too
        "DEPLOYSTUDIO_HOME": str(local_settings.home),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.registry_uri,  # the real one, to find the model
    }
    command = [sys.executable, "-m", "deploystudio.cli.main", "predict", model_uri]
    done = subprocess.run(
        [*command, "--input", str(request), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_got_nothing("CLI predict", json.loads(done.stdout), probes)
