"""Azure's old-stack example models in environments the product builds (issue 19, "Done when"):
an XGBoost 1.4 + scikit-learn 1.1 heart-style classifier (a Pipeline logged with MLflow 2's
sklearn flavor) and a LightGBM 3.3 iris classifier (MLflow 2's lightgbm flavor). Each model is
trained and logged at test time inside the environment `ensure` built for it (never committed),
then predicts through the sandboxed worker and serves from a local MLflow endpoint, on a request
written in Azure's sample-request shape (`input_data` with columns, index and data).

The app has neither XGBoost nor LightGBM: `auto` must pick the model's own environment and say
why, and `--env app` must fail with a message that names what is missing, with no traceback.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from deploystudio.deployment.base import Runtime
from deploystudio.deployment.invoke import request_body
from deploystudio.environment import installed_version
from deploystudio.environments import PlanInputs, ensure, environments_root, plan_environment
from deploystudio.environments.choice import choose
from deploystudio.payloads import parse_payload
from tests.conftest import AZURE_FIXTURES
from tests.environments_support import use_session_uv_cache, write_model

# numpy<2 throughout: XGBoost 1.4, LightGBM 3.3 and pandas 1.5 are built against NumPy 1.
# scikit-learn 1.1.3 in both, so the two environments share most wheels of the uv cache.
COMMON = "mlflow==2.17.2\nscikit-learn==1.1.3\npandas==1.5.3\nnumpy==1.26.4\ncloudpickle==2.2.1\n"
# XGBoost 1.4 imports pkg_resources (setuptools), which a uv virtualenv does not seed and a conda
# environment on Azure (with pip, hence setuptools) has. The model does not declare it, as real
# ones do not: the plan adds setuptools<82 (the last with pkg_resources), saying why.
HEART_STACK = COMMON + "xgboost==1.4.2\n"
IRIS_STACK = COMMON + "lightgbm==3.3.5\n"

# Run with the heart environment's Python: heart-disease-like rows (numbers and the categorical
# `thal`, as in Azure's heart classifier), a Pipeline of a ColumnTransformer and an XGBClassifier,
# saved with MLflow 2's sklearn flavor; prints a few rows and what the model predicts for them.
TRAIN_HEART = """
import json, sys
import numpy as np, pandas as pd, mlflow, sklearn, xgboost
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from xgboost import XGBClassifier
from mlflow.models import infer_signature
rng = np.random.default_rng(0)
n = 200
X = pd.DataFrame({
    "age": rng.integers(29, 78, n), "sex": rng.integers(0, 2, n), "cp": rng.integers(0, 4, n),
    "trestbps": rng.integers(94, 200, n), "chol": rng.integers(126, 564, n),
    "fbs": rng.integers(0, 2, n), "restecg": rng.integers(0, 3, n),
    "thalach": rng.integers(71, 202, n), "exang": rng.integers(0, 2, n),
    "oldpeak": rng.uniform(0, 6, n).round(1), "slope": rng.integers(0, 3, n),
    "ca": rng.integers(0, 4, n), "thal": rng.choice(["normal", "fixed", "reversible"], n)})
y = ((X["age"] > 55) & (X["thal"] != "normal") | (X["cp"] == 3)).astype("int64")
features = ColumnTransformer(
    [("thal", OneHotEncoder(handle_unknown="ignore"), ["thal"])], remainder="passthrough")
model = Pipeline([("features", features), ("classifier", XGBClassifier(
    n_estimators=20, max_depth=3, use_label_encoder=False, eval_metric="logloss"))]).fit(X, y)
mlflow.sklearn.save_model(
    model, sys.argv[1], signature=infer_signature(X, y), serialization_format="cloudpickle",
    pip_requirements=sys.argv[2].split())
rows = X.head(4)
print(json.dumps({"rows": json.loads(rows.to_json(orient="split")),
                  "y": model.predict(rows).tolist(),
                  "versions": [mlflow.__version__, sklearn.__version__, xgboost.__version__]}))
"""

# Run with the iris environment's Python: LightGBM's scikit-learn API on iris, saved with
# MLflow 2's lightgbm flavor.
TRAIN_IRIS = """
import json, sys
import pandas as pd, mlflow, lightgbm
from sklearn.datasets import load_iris
from mlflow.models import infer_signature
X, y = load_iris(return_X_y=True, as_frame=True)
X.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in X.columns]
model = lightgbm.LGBMClassifier(n_estimators=20, min_child_samples=5).fit(X, y)
mlflow.lightgbm.save_model(
    model, sys.argv[1], signature=infer_signature(X, y), pip_requirements=sys.argv[2].split())
rows = X.iloc[[0, 60, 120, 149]]
print(json.dumps({"rows": json.loads(rows.to_json(orient="split")),
                  "y": model.predict(rows).tolist(),
                  "versions": [mlflow.__version__, lightgbm.__version__]}))
"""


@pytest.fixture(scope="module", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory):
    yield from use_session_uv_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("old-frameworks-home")


def _train(home: Path, folder: Path, stack: str, flavors: str, script: str) -> dict:
    """Build the environment the stack declares with the product, train and save a model there,
    and write Azure's sample-request shape for the rows it predicted."""
    declared = write_model(folder.parent / "declared", stack, flavors=flavors)
    started = time.perf_counter()
    environment = ensure(
        plan_environment(PlanInputs.from_folder(declared), environments_root(home)), home
    )
    print(f"{folder.name}: environment planned and built in {time.perf_counter() - started:.1f} s")
    done = subprocess.run(
        [str(environment.python), "-c", script, str(folder), stack.replace("\n", " ")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    # Azure's sample request: {"input_data": {"columns": [...], "index": [...], "data": [[...]]}}
    # (as ../shared/fixtures/azureml-examples/sklearn-diabetes/sample-request.json).
    request = folder.parent / "sample-request.json"
    request.write_text(json.dumps({"input_data": facts["rows"]}, indent=2), encoding="utf-8")
    return {"folder": folder, "environment": environment, "request": request, **facts}


@pytest.fixture(scope="module")
def heart(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    flavor = "  sklearn:\n    serialization_format: cloudpickle\n    sklearn_version: 1.1.3\n"
    folder = tmp_path_factory.mktemp("heart") / "model"
    model = _train(home, folder, HEART_STACK, flavor, TRAIN_HEART)
    assert model["versions"] == ["2.17.2", "1.1.3", "1.4.2"]
    lock = (model["environment"].root / "requirements.lock").read_text().split()
    setuptools = next(p for p in lock if p.startswith("setuptools=="))
    assert int(setuptools.removeprefix("setuptools==").split(".")[0]) < 82
    plan = plan_environment(PlanInputs.from_folder(model["folder"]), environments_root(home))
    assert any("setuptools<82 is added" in note for note in plan.notes), plan.notes
    return model


@pytest.fixture(scope="module")
def iris(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    flavor = "  lightgbm:\n    lgb_version: 3.3.5\n"
    folder = tmp_path_factory.mktemp("iris") / "model"
    model = _train(home, folder, IRIS_STACK, flavor, TRAIN_IRIS)
    assert model["versions"] == ["2.17.2", "3.3.5"]
    return model


def test_the_request_shape_is_azures_sample_request(heart):
    azure = json.loads((AZURE_FIXTURES / "sklearn-diabetes" / "sample-request.json").read_text())
    ours = json.loads(heart["request"].read_text())
    assert set(ours) == set(azure) == {"input_data"}
    assert set(ours["input_data"]) == set(azure["input_data"]) == {"columns", "index", "data"}


def test_the_app_has_neither_framework():
    # What the --env app tests below assume; if the app ever gains one, they need revisiting.
    assert installed_version("xgboost") is None and installed_version("lightgbm") is None


@pytest.mark.parametrize(
    ("which", "module", "unmet"),
    [
        ("heart", "xgboost", f"scikit-learn==1.1.3 ({installed_version('scikit-learn')} here)"),
        ("iris", "lightgbm", "lightgbm==3.3.5 (not installed here)"),
    ],
)
def test_predict_on_azures_request_in_the_models_environment_not_the_apps(
    which, module, unmet, request, home, monkeypatch, capsys
):
    """`auto` picks the model's own environment and says why; the sandboxed worker predicts
    there on Azure's request; `--env app` fails with a message, not a traceback."""
    from deploystudio.cli.main import main

    model = request.getfixturevalue(which)
    capsys.readouterr()  # what building the fixture printed
    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    folder, body = str(model["folder"]), str(model["request"])
    assert main(["predict", folder, "--input", body, "--json"]) == 0
    out, err = capsys.readouterr()
    reply = json.loads(out)
    assert [next(iter(row.values())) for row in reply["predictions"]] == model["y"]
    assert reply["environment"]["mode"] == "auto"
    assert reply["environment"]["key"] == model["environment"].key
    assert unmet in reply["environment"]["reason"]
    assert "environment: The model's own environment, since the app's differs" in err
    # The app's environment has no such framework: a clear refusal that names it and offers the
    # model's own environment; no traceback.
    assert main(["predict", folder, "--input", body, "--env", "app"]) != 0
    out, err = capsys.readouterr()
    assert not out.strip()
    assert "Traceback" not in err and '  File "' not in err
    assert f"No module named '{module}'" in err
    assert f"{module} " in err and "not installed here" in err and "--env model" in err


@pytest.mark.parametrize("which", ["heart", "iris"])
def test_mlflow_endpoint_in_the_models_environment_answers_azures_request(
    which, request, home, tmp_path
):
    from deploystudio.deployment.local.processes import wait_ready
    from deploystudio.deployment.local.servers import ServerConfig, start_deployment_server

    model = request.getfixturevalue(which)
    chosen = choose("auto", model["folder"], home)
    config = ServerConfig(
        runtime=Runtime.MLFLOW, model_path=model["folder"], environment=chosen.environment
    )
    server = start_deployment_server(config, tmp_path / "run")
    try:
        wait_ready(server, 180)
        # MLflow's server reads dataframe_split: Azure's input_data table is the same split
        # orientation; the product reads Azure's request and writes the MLflow runtime's body.
        model_input = parse_payload(model["request"].read_bytes(), None)
        body = request_body(model_input.data, None, Runtime.MLFLOW)
        post = urllib.request.Request(
            server.score_url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(post, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["predictions"] == model["y"]
        command = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert command[0].decode() == str(model["environment"].python)
    finally:
        assert server.stop()
