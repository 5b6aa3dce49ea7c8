"""Batch jobs in a model's own environment (issue 19, parts 3 and 4), and the Azure export
pinned to that environment (part 7): `batch run --env` with an
old stack (scikit-learn 1.1.3, pandas 1.5.3, numpy 1.26.4, MLflow 2.17.2) built by the product
with uv, and models trained and logged inside it at test time (never committed). The gradient
boosting model pickles `sklearn.ensemble._gb_losses`, which the app's scikit-learn cannot load:
it scores only when the workers really run the old environment's Python."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from deploystudio.cli.main import main
from deploystudio.config import Settings, load_settings
from deploystudio.customization.script_environment import DEFAULT_BASE_IMAGE
from deploystudio.deployment.azure.export import export_online
from deploystudio.deployment.azure.specs import (
    ModelSource,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    ScoringCode,
)
from deploystudio.deployment.batch.jobs import get_batch_job, list_batch_jobs
from deploystudio.inference_server import SERVER_REQUIREMENT
from tests.conftest import REPO_ROOT
from tests.environments_support import use_session_uv_cache


@pytest.fixture(scope="module", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory):
    yield from use_session_uv_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def home(old_stack: dict) -> Path:
    return old_stack["home"]


@pytest.fixture(scope="module")
def old_models(old_stack: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The run's old stack (tests/conftest.py: its environment and models, shared with the
    worker's tests), and batch inputs written from the rows it predicted."""
    inputs = tmp_path_factory.mktemp("inputs")
    frame = pd.DataFrame(old_stack["X"], columns=["a", "b"])
    frame.to_csv(inputs / "part-1.csv", index=False)
    frame.to_parquet(inputs / "part-2.parquet", index=False)
    return {**old_stack, "inputs": inputs}


@pytest.fixture()
def cli_home(home: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)  # the session's registry
    return load_settings()


def _predictions(output: Path) -> list[dict[str, str]]:
    with (output / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_batch_run_auto_scores_in_the_models_own_environment(old_models, cli_home, tmp_path,
                                                             capsys):
    output = tmp_path / "out"
    code = main(["batch", "run", str(old_models["plain"]), "--input",
                 str(old_models["inputs"]), "--output", str(output)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "environment: The model's own environment, since the app's differs" in out
    assert "scikit-learn==1.1.3" in out
    rows = _predictions(output)
    assert list(rows[0]) == ["row", "prediction", "file_name"]
    by_file: dict[str, list[int]] = {}
    for row in rows:
        by_file.setdefault(row["file_name"], []).append(int(row["prediction"]))
    # CSV through pandas 1.5, Parquet through the environment's pyarrow: both as trained.
    assert by_file == {"part-1.csv": old_models["y"], "part-2.parquet": old_models["y"]}
    assert [int(r["row"]) for r in rows] == [0, 1, 2, 3, 4] * 2
    job = list_batch_jobs(cli_home, 1)[0]
    assert job.environment["mode"] == "auto"
    assert job.environment["key"] == old_models["environment"].key
    assert job.environment["python"] == str(old_models["environment"].python)
    assert job.summary["environment"]["key"] == old_models["environment"].key
    # `batch show` says it too.
    assert main(["batch", "show", job.id]) == 0
    assert "Environment: The model's own environment" in capsys.readouterr().out
    # And the Batch page, next to the job.
    at = AppTest.from_file(str(REPO_ROOT / "views" / "batch.py"), default_timeout=120)
    at.query_params["job"] = job.id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value for c in at.caption]
    assert any(f"Environment {old_models['environment'].key}" in c for c in captions), captions


def test_an_old_pickle_scores_only_in_its_own_environment(old_models, cli_home, tmp_path,
                                                          capsys):
    source = old_models["inputs"] / "part-1.csv"
    mine = tmp_path / "mine"
    assert main(["batch", "run", str(old_models["boosted"]), "--input", str(source),
                 "--output", str(mine), "--env", "model", "--json"]) == 0
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert job["environment"]["mode"] == "model"
    assert "as asked (--env model)" in job["environment"]["reason"]
    assert "environment: The model's own environment" in err
    assert len(_predictions(mine)) == 5
    # The app's scikit-learn cannot unpickle scikit-learn 1.1's gradient boosting.
    theirs = tmp_path / "theirs"
    assert main(["batch", "run", str(old_models["boosted"]), "--input", str(source),
                 "--output", str(theirs), "--env", "app"]) == 1
    out = capsys.readouterr().out
    assert "environment: The app's environment, as asked (--env app)." in out
    assert "could not be loaded" in out and "_gb_losses" in out
    failed = get_batch_job(cli_home, list_batch_jobs(cli_home, 1)[0].id)
    assert failed.environment["key"] is None and failed.environment["mode"] == "app"


def test_a_read_error_in_the_old_environment_fails_only_its_file(old_models, cli_home,
                                                                 tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.csv").write_text((old_models["inputs"] / "part-1.csv").read_text())
    (inputs / "bad.csv").write_text("a,b\n1.0,not-a-number\n")
    output = tmp_path / "out"
    code = main(["batch", "run", str(old_models["plain"]), "--input", str(inputs),
                 "--output", str(output), "--env", "model"])
    out = capsys.readouterr().out
    assert code == 0, out  # error_threshold -1 tolerates the failed file
    assert "1 file(s) scored, 1 failed" in out
    assert "bad.csv, rows 1-1" in out
    assert {r["file_name"] for r in _predictions(output)} == {"good.csv"}


# ----------------------------------------------------------------------------- Azure fidelity


def _pip_and_python(conda_text: str) -> tuple[list[str], list[str]]:
    document = yaml.safe_load(conda_text)
    pip = next(d["pip"] for d in document["dependencies"] if isinstance(d, dict))
    python = [d for d in document["dependencies"] if isinstance(d, str) and d.startswith("python")]
    return pip, python


def test_azure_export_pins_the_environment_the_model_ran_in(old_models, home, tmp_path):
    """Part 7: the exported conda files (the model folder's, which Azure uses for a no-code
    deployment, and a scoring bundle's) list exactly what the model's environment installed,
    and its Python; azure-ai-ml loads the export back."""
    # The model environment a local deployment ran in (which one: `pinned_environment`, from
    # the deployment's record; tested with a real deployment in test_worker_model_environment).
    pinned = old_models["environment"]
    lock = (pinned.root / "requirements.lock").read_text().split()
    assert "scikit-learn==1.1.3" in lock and "pandas==1.5.3" in lock

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    server = "azureml-inference-server-http==1.4.0"
    (bundle / "conda.yaml").write_text(
        "name: env\nchannels: [conda-forge]\ndependencies:\n  - python=3.12\n  - pip\n"
        f"  - pip:\n    - scikit-learn>=1.5\n    - {server}\n"
    )
    spec = OnlineDeploymentSpec(
        name="blue",
        endpoint_name="old-stack",
        model=ModelSource(local_path=old_models["plain"], name="old-stack", version="1"),
        code=ScoringCode(bundle, "score.py", bundle / "conda.yaml", DEFAULT_BASE_IMAGE),
    )
    result = export_online(tmp_path / "out", OnlineEndpointSpec("old-stack"), spec, pinned=pinned)
    for conda in (result.folder / "conda.yaml", result.folder / "model" / "conda.yaml"):
        pip, python = _pip_and_python(conda.read_text())
        assert python == [f"python={pinned.python_version}"]
        assert pip[: len(lock)] == lock  # every installed version, exactly
        assert "scikit-learn>=1.5" not in pip
    pip, _ = _pip_and_python((result.folder / "conda.yaml").read_text())
    assert pip[len(lock):] == [server]  # not in the environment: kept as the bundle asked
    # azure-ai-ml reads the pinned conda file into the deployment's environment.
    loaded = result.deployment.environment.conda_file
    loaded_pip = next(d["pip"] for d in loaded["dependencies"] if isinstance(d, dict))
    assert "scikit-learn==1.1.3" in loaded_pip and f"python={pinned.python_version}" in (
        loaded["dependencies"]
    )
    # The original model folder is untouched: only the export is pinned.
    assert "Pinned by Deploy Studio" in (result.folder / "model" / "conda.yaml").read_text()
    assert "Pinned by Deploy Studio" not in (old_models["plain"] / "conda.yaml").read_text()

    # Without a model environment, the bundle's conda file goes out as written.
    plain = export_online(tmp_path / "plain", OnlineEndpointSpec("old-stack"), spec)
    assert (plain.folder / "conda.yaml").read_text() == (bundle / "conda.yaml").read_text()


# ----------------------------------------------------------------------------- script validate

OLD_STACK_SCRIPT = '''
import glob, json, os
import mlflow.pyfunc, pandas as pd, sklearn

def init():
    global model
    found = glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "**", "MLmodel"),
                      recursive=True)
    model = mlflow.pyfunc.load_model(os.path.dirname(found[0]))

def run(raw_data):
    rows = json.loads(raw_data)["data"]
    frame = pd.DataFrame(rows, columns=["a", "b"])
    return {"predictions": [int(v) for v in model.predict(frame)],
            "versions": [mlflow.__version__, sklearn.__version__, pd.__version__]}
'''


def test_script_validate_runs_the_inference_server_in_the_models_environment(
    old_models, cli_home, tmp_path, capsys
):
    """Part 3 for `script validate --env model`: the Azure ML inference server runs with the
    model environment's Python; the server package is an extra requirement of another
    environment keyed by both, whose lock lists it."""
    folder = tmp_path / "script"
    folder.mkdir()
    (folder / "score.py").write_text(OLD_STACK_SCRIPT)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"data": old_models["X"]}))
    code = main(["script", "validate", str(folder), "--model", str(old_models["plain"]),
                 "--request", str(request), "--env", "model", "--timeout", "300", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0, out[-4000:]
    reply = json.loads(out)
    assert reply["response"]["versions"] == ["2.17.2", "1.1.3", "1.5.3"]
    assert reply["response"]["predictions"] == old_models["y"]
    key = reply["environment"]["key"]
    assert key and key != old_models["environment"].key  # the model's pins plus the server
    assert "as asked (--env model)" in reply["environment"]["reason"]
    lock = (Path(cli_home.home) / "environments" / key / "requirements.lock").read_text()
    assert f"{SERVER_REQUIREMENT}\n" in lock and "scikit-learn==1.1.3" in lock
    # --env app: the app's server and scikit-learn.
    code = main(["script", "validate", str(folder), "--model", str(old_models["plain"]),
                 "--request", str(request), "--env", "app", "--json"])
    out, _ = capsys.readouterr()
    reply = json.loads(out)
    assert reply["environment"]["key"] is None
    if code == 0:  # the app's scikit-learn may or may not read the 1.1.3 pickle
        assert reply["response"]["versions"][1] != "1.1.3"
