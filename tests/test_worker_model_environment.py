"""The prediction worker in a model's own environment (issue 19, parts 3 and 4): an old stack
(scikit-learn 1.1.3, pandas 1.5, numpy 1.26, MLflow 2.x) built by the product with uv; a model
trained and logged inside it at test time (never committed), then predicted through the
sandboxed worker running that environment's Python. The environment and the model are the
run's `old_stack` (tests/conftest.py), shared with the batch tests."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deploystudio.environments.choice import choose
from deploystudio.errors import PredictionError
from deploystudio.payloads import ModelInput
from deploystudio.worker import foreign
from deploystudio.worker.process import PredictionWorker
from deploystudio.worker.sandbox import Access
from tests.environments_support import use_session_uv_cache


@pytest.fixture(scope="module", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory):
    yield from use_session_uv_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def old_model(old_stack: dict) -> dict:
    """The old-stack environment and a model trained and saved in it (tests/conftest.py: built
    once per run, shared with the batch tests)."""
    return old_stack


@pytest.fixture(scope="module")
def home(old_stack: dict) -> Path:
    return old_stack["home"]


def test_auto_runs_an_old_stack_model_in_its_own_environment(old_model, home, tmp_path):
    chosen = choose("auto", old_model["folder"], home, progress=print)
    assert chosen.environment is not None
    assert "scikit-learn==1.1.3" in chosen.reason and "own environment" in chosen.reason
    worker = PredictionWorker(
        tmp_path / "worker.log",
        access=Access.of(read=chosen.read_roots),
        python=chosen.python_for_worker,
    )
    try:
        versions = worker.call(foreign.versions)
        assert versions["mlflow"] == "2.17.2" and versions["pandas"] == "1.5.3"
        assert versions["numpy"] == "1.26.4" and versions["scikit-learn"] == "1.1.3"
        frame = pd.DataFrame(old_model["X"], columns=["a", "b"])
        started = time.perf_counter()
        prediction = worker.predict(old_model["folder"], ModelInput(data=frame))
        first = time.perf_counter() - started
        assert np.asarray(prediction.output.iloc[:, 0]).tolist() == old_model["y"]
        assert not prediction.from_cache
        again = worker.predict(old_model["folder"], ModelInput(data=frame))
        assert again.from_cache
        print(f"worker in the model's environment: first prediction (start, load) {first:.2f} s")
    finally:
        worker.stop()


def test_a_model_error_in_the_old_environment_reaches_the_app(old_model, home, tmp_path):
    chosen = choose("model", old_model["folder"], home)
    worker = PredictionWorker(
        tmp_path / "worker.log",
        access=Access.of(read=chosen.read_roots),
        python=chosen.python_for_worker,
    )
    try:
        with pytest.raises(PredictionError, match=r"(?i)column|schema|missing"):
            worker.predict(old_model["folder"], ModelInput(data=pd.DataFrame({"zz": [1.0]})))
        assert worker.call(foreign.versions)["pandas"] == "1.5.3"  # still alive
    finally:
        worker.stop()


def test_cli_predict_env_choices(old_model, home, tmp_path, monkeypatch, capsys):
    from deploystudio.cli.main import main

    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    body = tmp_path / "rows.json"
    split = {"columns": ["a", "b"], "data": old_model["X"]}
    body.write_text(json.dumps({"dataframe_split": split}))
    folder = str(old_model["folder"])
    assert main(["predict", folder, "--input", str(body), "--json"]) == 0
    out, err = capsys.readouterr()
    reply = json.loads(out)
    assert [next(iter(row.values())) for row in reply["predictions"]] == old_model["y"]
    assert reply["environment"]["mode"] == "auto"
    assert reply["environment"]["key"] == old_model["environment"].key
    assert "scikit-learn==1.1.3" in reply["environment"]["reason"]
    assert "environment: The model's own environment" in err
    # --env app: the app's environment, said so (its scikit-learn may still load this pickle).
    main(["predict", folder, "--input", str(body), "--json", "--env", "app"])
    out, err = capsys.readouterr()
    assert "environment: The app's environment, as asked (--env app)." in err
    if out.strip():
        assert json.loads(out)["environment"]["key"] is None


def test_mlflow_runtime_serves_with_the_environments_own_mlflow(old_model, home, tmp_path):
    import urllib.request

    from deploystudio.deployment.base import Runtime
    from deploystudio.deployment.local.processes import wait_ready
    from deploystudio.deployment.local.servers import ServerConfig, start_deployment_server

    chosen = choose("auto", old_model["folder"], home)
    config = ServerConfig(
        runtime=Runtime.MLFLOW, model_path=old_model["folder"], environment=chosen.environment
    )
    started = time.perf_counter()
    server = start_deployment_server(config, tmp_path / "run")
    try:
        wait_ready(server, 180)
        print(f"MLflow 2 scoring server in the model's environment ready in "
              f"{time.perf_counter() - started:.1f} s")
        assert server.is_ours()  # MLflow 2's gunicorn command is recognised as this server
        split = {"columns": ["a", "b"], "data": old_model["X"]}
        request = urllib.request.Request(
            server.score_url,
            data=json.dumps({"dataframe_split": split}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["predictions"] == old_model["y"]
        log = server.log_path.read_text()
        assert "gunicorn" in log.lower() or "Booting worker" in log
    finally:
        assert server.stop()


def test_the_serve_command_is_recorded_at_build_and_read_at_start(old_model, tmp_path):
    from deploystudio.deployment.base import Runtime
    from deploystudio.deployment.local.processes import wait_ready
    from deploystudio.deployment.local.servers import ServerConfig, start_deployment_server
    from deploystudio.environments.serve_command import SERVE_FILE, ask_arguments, serve_command

    environment = old_model["environment"]
    recorded = environment.root / SERVE_FILE
    template = json.loads(recorded.read_text())
    assert "gunicorn" in template["command"]  # MLflow 2's form, with placeholders
    # Filled in, it is what the environment's MLflow answers for the same start.
    model = old_model["folder"]
    asked = subprocess.run(
        [str(environment.python), *ask_arguments(str(model), "5123", "127.0.0.1", "3")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    command, added = json.loads(asked.stdout.strip().splitlines()[-1])
    assert serve_command(environment.root, model, "127.0.0.1", 5123, 3) == (command, added)

    # A start reads the file (a variable added to it reaches the server) ...
    config = ServerConfig(runtime=Runtime.MLFLOW, model_path=model, environment=environment)
    original = recorded.read_text()
    try:
        recorded.write_text(json.dumps(
            {**template, "env": {**template["env"], "DS_FROM_SERVE_JSON": "yes"}}))
        server = start_deployment_server(config, tmp_path / "recorded")
        try:
            wait_ready(server, 180)
            environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
            assert b"DS_FROM_SERVE_JSON=yes" in environ
        finally:
            server.stop()
        # ... and an environment built before it existed asks its MLflow, as before.
        recorded.unlink()
        server = start_deployment_server(config, tmp_path / "asked")
        try:
            wait_ready(server, 180)
            environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
            assert not any(v.startswith(b"DS_FROM_SERVE_JSON") for v in environ)
        finally:
            server.stop()
    finally:
        recorded.write_text(original)


def test_cli_deploy_env_auto_serves_an_old_model_with_its_mlflow(
    old_model, home, monkeypatch, capsys
):
    import urllib.request

    from deploystudio.cli.main import main

    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    folder = str(old_model["folder"])
    try:
        code = main(["deploy", "old-stack", "--deployment", "blue", "--model", folder,
                     "--runtime", "mlflow", "--all-traffic", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        deployment = json.loads(out)["deployment"]
        assert deployment["state"] == "ready" and deployment["settings"]["environment"] == "auto"
        split = {"columns": ["a", "b"], "data": old_model["X"]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{deployment['port']}/invocations",
            data=json.dumps({"dataframe_split": split}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["predictions"] == old_model["y"]
        # The server is the environment's Python running MLflow 2's gunicorn app.
        command = Path(f"/proc/{deployment['pid']}/cmdline").read_bytes().split(b"\0")
        assert command[0].decode() == str(old_model["environment"].python)
        assert b"mlflow.pyfunc.scoring_server.wsgi:app" in command
    finally:
        main(["endpoint", "stop-all"])


def test_azureml_runtime_runs_the_inference_server_in_the_models_environment(
    old_model, home, tmp_path, monkeypatch, capsys
):
    """Part 2 for the azureml runtime: Azure ML's inference server (azmlinfsrv's app under
    gunicorn) runs with the model environment's Python, in another environment holding the
    model's pins plus the server; the gunicorn there is the one MLflow 2.17 allows (<24), which
    has no --no-control-socket; the deployment's record says which environment ran it, and the
    Azure export pins from that record."""
    from deploystudio.cli.main import main
    from deploystudio.deployment.azure.pinning import pin_conda, pinned_environment
    from deploystudio.deployment.store import DeploymentStore
    from deploystudio.environments import lookup_key
    from deploystudio.inference_server import SERVER_REQUIREMENT

    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    folder = str(old_model["folder"])
    try:
        code = main(["deploy", "old-azureml", "--deployment", "blue", "--model", folder,
                     "--runtime", "azureml", "--env", "model", "--all-traffic", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err[-4000:]
        deployment = json.loads(out)["deployment"]
        assert deployment["state"] == "ready"
        recorded = deployment["environment"]
        assert recorded["mode"] == "model" and recorded["key"]
        assert recorded["key"] != old_model["environment"].key  # the model's pins + the server
        environment = lookup_key(home, recorded["key"])
        assert environment is not None and recorded["python"] == str(environment.python)
        lock = (environment.root / "requirements.lock").read_text().split()
        assert SERVER_REQUIREMENT in lock and "scikit-learn==1.1.3" in lock
        assert "mlflow==2.17.2" in lock
        gunicorn = next(p for p in lock if p.startswith("gunicorn=="))
        assert int(gunicorn.removeprefix("gunicorn==").split(".")[0]) < 24  # MLflow 2.17's cap
        # The server is that environment's Python running gunicorn with azmlinfsrv's app, and
        # without the option its gunicorn does not know.
        command = Path(f"/proc/{deployment['pid']}/cmdline").read_bytes().split(b"\0")
        assert command[0].decode() == str(environment.python)
        assert b"azureml_inference_server_http.server.entry:app" in command
        assert b"--no-control-socket" not in command
        # Azure's request shape, through the endpoint's scoring URI (key checked by the front).
        request = tmp_path / "sample-request.json"
        rows = {"columns": ["a", "b"], "index": list(range(len(old_model["X"]))),
                "data": old_model["X"]}
        request.write_text(json.dumps({"input_data": rows}))
        assert main(["endpoint", "invoke", "old-azureml", "--input", str(request)]) == 0
        answer = json.loads(capsys.readouterr().out)
        predictions = answer["predictions"] if isinstance(answer, dict) else answer
        assert [int(p) for p in predictions] == old_model["y"]
        # Said by `endpoint show`.
        assert main(["endpoint", "show", "old-azureml"]) == 0
        shown = capsys.readouterr().out
        assert f"environment: model environment {recorded['key']} (Python " in shown
        assert str(environment.python) in shown
        # The export pins what the deployment recorded, the inference server included.
        records = DeploymentStore(home / "deployments.db").list_deployments()
        pinning = pinned_environment(folder, records, home)
        assert pinning.environment is not None and pinning.environment.key == recorded["key"]
        assert "old-azureml/blue" in pinning.note
        conda = pin_conda((old_model["folder"] / "conda.yaml").read_text(), pinning.environment)
        assert SERVER_REQUIREMENT in conda and "scikit-learn==1.1.3" in conda
    finally:
        main(["endpoint", "stop-all"])


def test_version_skew_in_the_app_environment_says_which_versions_and_offers_the_models(
    old_model, home, tmp_path, monkeypatch, capsys
):
    from deploystudio.cli.main import main
    from deploystudio.environment import installed_version

    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    boosted = str(old_model["folder"]) + "-boosted"
    body = tmp_path / "rows.json"
    split = {"columns": ["a", "b"], "data": old_model["X"]}
    body.write_text(json.dumps({"dataframe_split": split}))
    assert main(["predict", boosted, "--input", str(body), "--env", "app"]) != 0
    _, err = capsys.readouterr()
    assert "sklearn.ensemble._gb_losses" in err  # the loader's own error stays
    assert (
        f"version skew: scikit-learn 1.1.3 when saved, {installed_version('scikit-learn')} here"
        in err
    )
    assert "--env model" in err
    # In its own environment the same model predicts.
    assert main(["predict", boosted, "--input", str(body), "--env", "model", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert len(json.loads(out)["predictions"]) == 5


@pytest.mark.parametrize("where", ["app", "model"])
def test_a_native_crash_names_its_signal_and_the_last_lines(where, old_model, tmp_path):
    import ctypes

    from deploystudio.errors import PredictionWorkerError

    environment = old_model["environment"] if where == "model" else None
    worker = PredictionWorker(
        tmp_path / "worker.log",
        access=Access.of(read=[environment.root] if environment else []),
        python=environment.python if environment else None,
    )
    try:
        with pytest.raises(PredictionWorkerError) as caught:
            worker.call(ctypes.string_at, 0)  # reads address 0: SIGSEGV in C
        message = str(caught.value)
        assert "killed by SIGSEGV (a native crash" in message
        assert "Fatal Python error: Segmentation fault" in message  # the log's last lines
        assert worker.call(foreign.versions)["python"]  # it starts again on next use
    finally:
        worker.stop()
