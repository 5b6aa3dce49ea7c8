"""Predictions in process and through the worker process, against real models."""

from __future__ import annotations

import importlib
import json
import os
import re
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature, infer_signature

from deploystudio.errors import InvalidModelUriError, PredictionError, PredictionWorkerError
from deploystudio.model_uri import parse_model_uri
from deploystudio.payload_formats import ModelInput
from deploystudio.payloads import parse_payload
from deploystudio.prediction import (
    ModelCache,
    local_model_path,
    predict_in_process,
    predictions_frame,
)
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.process import PredictionWorker
from deploystudio.worker.sandbox import landlock_abi

WORKER_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def iris_path(settings, seeded) -> Path:
    return local_model_path("models:/iris-classifier@champion", settings)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    worker = PredictionWorker(
        tmp_path_factory.mktemp("worker") / "worker.log", timeout_seconds=WORKER_TIMEOUT
    )
    yield worker
    worker.stop()


def iris_rows(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sepal_length": [5.1] * n,
            "sepal_width": [3.5] * n,
            "petal_length": [1.4] * n,
            "petal_width": [0.2] * n,
        }
    )


def code_model(tmp_path: Path, body: str, signature: ModelSignature | None = None) -> Path:
    """A pyfunc model saved from code (no pickle), whose predict runs `body`."""
    code = tmp_path / "model_code.py"
    code.write_text(
        "import os, time\nimport mlflow\nimport pandas as pd\n\n"
        "class Model(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        + textwrap.indent(textwrap.dedent(body), " " * 8)
        + "\n\nmlflow.models.set_model(Model())\n"
    )
    path = tmp_path / "model"
    mlflow.pyfunc.save_model(str(path), python_model=str(code), signature=signature)
    return path


def test_download_is_cached_and_alias_resolves_to_the_version(settings, seeded):
    first = local_model_path("models:/iris-classifier@champion", settings)
    again = local_model_path("models:/iris-classifier/1", settings)
    assert first == again and (first / "MLmodel").is_file()
    assert local_model_path("models:/iris-classifier/2", settings) != first


def test_cache_loads_once_and_evicts_least_recently_used(settings, seeded, iris_path):
    cache = ModelCache(capacity=1)
    first = predict_in_process(cache, iris_path, ModelInput(iris_rows()))
    second = predict_in_process(cache, iris_path, ModelInput(iris_rows()))
    assert not first.from_cache and first.load_seconds > 0
    assert second.from_cache and second.load_seconds == 0
    other = local_model_path("models:/iris-classifier/2", settings)
    predict_in_process(cache, other, ModelInput(iris_rows()))
    assert str(iris_path) not in cache and str(other) in cache


def test_predictions_match_plain_pyfunc(iris_path):
    rows = iris_rows(5)
    expected = mlflow.pyfunc.load_model(str(iris_path)).predict(rows)
    prediction = predict_in_process(ModelCache(), iris_path, ModelInput(rows))
    assert list(prediction.output["prediction"]) == list(expected)
    assert prediction.predict_seconds > 0


def test_params_change_the_answer(settings, seeded):
    path = local_model_path("models:/cancer-risk-scorer/1", settings)
    example = mlflow.models.Model.load(str(path)).load_input_example(str(path))
    cache = ModelCache()
    everyone = predict_in_process(cache, path, ModelInput(example, {"threshold": 0.0}))
    no_one = predict_in_process(cache, path, ModelInput(example, {"threshold": 1.01}))
    assert set(everyone.output["label"]) == {"malignant"}
    assert set(no_one.output["label"]) == {"benign"}
    assert list(everyone.output.columns) == ["probability", "label"]


@pytest.fixture(scope="module")
def cancer_path(settings, seeded) -> Path:
    return local_model_path("models:/cancer-risk-scorer/1", settings)


def cancer_example(path: Path) -> pd.DataFrame:
    return mlflow.models.Model.load(str(path)).load_input_example(str(path))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"threshold": "abc"}, "Param 'threshold' expects a double; got 'abc'."),
        ({"threshold": [0.2]}, "Param 'threshold' expects a double; got [0.2] (a list)."),
    ],
)
def test_invalid_params_are_named_at_prediction_time(cancer_path, params, message):
    with pytest.raises(PredictionError) as caught:
        predict_in_process(
            ModelCache(), cancer_path, ModelInput(cancer_example(cancer_path), params)
        )
    assert str(caught.value) == f"{message} The model accepts: threshold (double, default 0.5)."


def test_unknown_params_are_a_warning_and_the_default_applies(cancer_path):
    example = cancer_example(cancer_path)
    cache = ModelCache()
    default = predict_in_process(cache, cancer_path, ModelInput(example))
    typo = predict_in_process(cache, cancer_path, ModelInput(example, {"treshold": 0.0}))
    pd.testing.assert_frame_equal(typo.output, default.output)
    assert typo.warnings == [
        "Unknown param 'treshold'; the model accepts: threshold (double, default 0.5). MLflow "
        "ignores params the signature does not declare, so it has no effect: check its spelling."
    ]
    # Parsed with the signature, the same warning is given once, not twice.
    signature = mlflow.models.Model.load(str(cancer_path)).signature
    body = {"dataframe_records": example.to_dict(orient="records"), "params": {"treshold": 0.0}}
    parsed = parse_payload(json.dumps(body), signature)
    assert predict_in_process(cache, cancer_path, parsed).warnings == typo.warnings


@pytest.fixture(scope="module")
def typed_model(tmp_path_factory) -> Path:
    """A model whose signature has a double, a long and a boolean column."""
    example = pd.DataFrame({"x": [1.5], "n": [1], "b": [True]})
    return code_model(
        tmp_path_factory.mktemp("typed"),
        "return [0] * len(model_input)",
        infer_signature(example, [0]),
    )


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("x", pd.Series([1.0, 2.0, "abc"], dtype=object), "Column 'x' expects double; row 3"),
        ("n", [1.0, float("nan"), 3.0], "Column 'n' holds long values, so it cannot be empty"),
        # MLflow refuses a float column for a long one whatever its values: said so.
        (
            "n",
            [1.0, 2.0, 3.5],
            "Column 'n' expects long, but it holds float64 values (row 1, data rows counted from "
            "1, has 1.0), and MLflow does not convert float64 to long when it predicts",
        ),
        ("b", ["true", "false", "maybe"], "Column 'b' expects boolean, but it holds str values"),
    ],
)
def test_a_value_mlflow_refuses_at_prediction_time_is_named_with_its_row(
    typed_model, column, values, expected
):
    frame = pd.DataFrame({"x": [1.5, 2.5, 3.5], "n": [1, 2, 3], "b": [True, False, True]})
    frame[column] = values
    with pytest.raises(PredictionError) as caught:
        predict_in_process(ModelCache(), typed_model, ModelInput(frame))
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "Failed to enforce schema" not in message  # MLflow's dump of the whole input


def test_tensor_model(settings, seeded):
    path = local_model_path("models:/digits-tensor/1", settings)
    images = np.zeros((2, 8, 8), dtype=np.float32)
    prediction = predict_in_process(ModelCache(), path, ModelInput(images))
    assert len(prediction.output) == 2


def test_missing_column_names_the_column(iris_path):
    with pytest.raises(PredictionError, match="petal_width"):
        predict_in_process(
            ModelCache(), iris_path, ModelInput(iris_rows().drop(columns="petal_width"))
        )


def test_azure_fixture_request_predicts_on_the_azure_fixture_model(azure_diabetes_model):
    body = (azure_diabetes_model.parent / "sample-request.json").read_text()
    schema = mlflow.models.Model.load(str(azure_diabetes_model / "MLmodel")).get_input_schema()
    model_input = parse_payload(body, schema)
    prediction = predict_in_process(ModelCache(), azure_diabetes_model, model_input)
    expected = mlflow.pyfunc.load_model(str(azure_diabetes_model)).predict(model_input.data)
    assert prediction.output["prediction"].tolist() == pytest.approx(list(expected))


@pytest.mark.parametrize(
    ("raw", "columns", "rows"),
    [
        (np.array([1, 2]), ["prediction"], 2),
        (np.array([[0.1, 0.9], [0.8, 0.2]]), ["prediction_0", "prediction_1"], 2),
        (pd.Series(["a", "b", "c"], name="label"), ["label"], 3),
        (pd.DataFrame({"p": [1.0]}), ["p"], 1),
        ([1, 2, 3], ["prediction"], 3),
        ({"a": [1, 2], "b": [3, 4]}, ["a", "b"], 2),
        (7, ["prediction"], 1),
    ],
)
def test_every_output_kind_becomes_one_row_per_input(raw, columns, rows):
    frame = predictions_frame(raw)
    assert list(frame.columns) == columns and len(frame) == rows


def test_worker_predicts_like_in_process_and_caches(worker, iris_path):
    in_process = predict_in_process(ModelCache(), iris_path, ModelInput(iris_rows()))
    first = worker.predict(iris_path, ModelInput(iris_rows()))
    second = worker.predict(iris_path, ModelInput(iris_rows()))
    pd.testing.assert_frame_equal(first.output, in_process.output)
    assert not first.from_cache and second.from_cache


def test_worker_errors_are_the_domain_errors(worker, iris_path):
    with pytest.raises(PredictionError, match="petal_width"):
        worker.predict(iris_path, ModelInput(iris_rows().drop(columns="petal_width")))
    assert worker.alive


def test_worker_does_not_see_secrets(worker, tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cr3t")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    worker.stop()  # the next start takes the environment as it is now
    path = code_model(
        tmp_path,
        """
        names = ["AZURE_CLIENT_SECRET", "MLFLOW_TRACKING_TOKEN", "PATH"]
        return pd.DataFrame({"name": names, "seen": [n in os.environ for n in names]})
    """,
    )
    seen = worker.predict(path, ModelInput(pd.DataFrame({"x": [1]}))).output
    assert dict(zip(seen["name"], seen["seen"], strict=True)) == {
        "AZURE_CLIENT_SECRET": False,
        "MLFLOW_TRACKING_TOKEN": False,
        "PATH": True,
    }
    assert "AWS_SECRET_ACCESS_KEY" not in scrubbed_environment({"AWS_SECRET_ACCESS_KEY": "x"})


def test_the_environment_is_an_allow_list():
    app = {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "2",
        "HOME": "/home/ana",
        "DATABASE_URL": "postgresql://app:pw@db/prod",
        "GH_PAT": "ghp_x",
        "SSH_AUTH_SOCK": "/tmp/ssh-x/agent.1",
        "PYTHONPATH": "/home/ana/src",
    }
    env = scrubbed_environment(app, home=Path("/w"), temp=Path("/w/tmp"), extra={"A": "1"})
    assert env == {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "2",
        "HOME": "/w",
        "TMPDIR": "/w/tmp",
        "A": "1",
    }


@pytest.mark.skipif(not landlock_abi(), reason="the kernel has no Landlock")
def test_a_worker_reads_only_the_model_it_previews(worker, tmp_path, iris_path):
    """Previewing another model restarts the worker with that model's folder only."""
    path = code_model(
        tmp_path,
        """
        target = params["path"] if params else "MLmodel"
        try:
            with open(target) as handle:
                handle.read(1)
            seen = "read"
        except OSError as exc:
            seen = type(exc).__name__
        return pd.DataFrame({"seen": [seen] * len(model_input)})
    """,
        signature=infer_signature(pd.DataFrame({"x": [1]}), params={"path": ""}),
    )
    rows = ModelInput(pd.DataFrame({"x": [1]}), params={"path": str(path / "MLmodel")})
    assert worker.predict(path, rows).output["seen"].tolist() == ["read"]
    assert len(worker.predict(iris_path, ModelInput(iris_rows())).output) == 3
    other = ModelInput(pd.DataFrame({"x": [1]}), params={"path": str(iris_path / "MLmodel")})
    assert worker.predict(path, other).output["seen"].tolist() == ["PermissionError"]


def test_crashing_model_takes_down_only_the_worker(worker, tmp_path, iris_path):
    path = code_model(tmp_path, "print('about to crash', flush=True)\nos._exit(3)")
    with pytest.raises(PredictionWorkerError) as error:
        worker.predict(path, ModelInput(pd.DataFrame({"x": [1]})))
    assert "exited with code 3" in str(error.value)
    assert "about to crash" in str(error.value)
    assert not worker.alive
    assert len(worker.predict(iris_path, ModelInput(iris_rows())).output) == 3
    assert worker.alive


def test_hanging_model_times_out_and_the_worker_restarts(worker, tmp_path, iris_path):
    path = code_model(tmp_path, "time.sleep(600)")
    # Load the model first so the timeout measures the hang, not the import.
    with pytest.raises(PredictionWorkerError, match="did not answer within 3 s"):
        started = time.monotonic()
        worker.predict(path, ModelInput(pd.DataFrame({"x": [1]})), timeout_seconds=3)
    assert time.monotonic() - started < 15
    assert len(worker.predict(iris_path, ModelInput(iris_rows())).output) == 3


def test_memory_hungry_model_hits_the_limit_not_the_machine(tmp_path, iris_path):
    worker = PredictionWorker(
        tmp_path / "worker.log", memory_limit_mb=3072, timeout_seconds=WORKER_TIMEOUT
    )
    try:
        path = code_model(tmp_path, "blob = bytearray(16 * 1024 ** 3)\nreturn [len(blob)]")
        with pytest.raises(PredictionWorkerError, match="memory"):
            worker.predict(path, ModelInput(pd.DataFrame({"x": [1]})))
        assert len(worker.predict(iris_path, ModelInput(iris_rows())).output) == 3
    finally:
        worker.stop()


def test_model_output_that_is_json_is_kept(tmp_path, worker):
    path = code_model(
        tmp_path,
        "return [json.dumps({'a': 1})] * len(model_input)".replace(
            "json.dumps({'a': 1})", repr(json.dumps({"a": 1}))
        ),
    )
    out = worker.predict(path, ModelInput(pd.DataFrame({"x": [1, 2]}))).output
    assert out["prediction"].tolist() == ['{"a": 1}', '{"a": 1}']


@pytest.mark.parametrize(
    ("body", "rows", "message"),
    [
        ("return {1, 2}", 2, "a Python set of 2 value"),
        ("return {'a': [1, 2], 'b': [3]}", 2, r"different lengths \('a': 2, 'b': 1\)"),
        ("return [1, 2, 3]", 2, r"3 prediction row\(s\) for 2 input row\(s\)"),
        ("return pd.DataFrame({'p': [0.5]})", 3, r"1 prediction row\(s\) for 3 input"),
    ],
)
def test_output_that_is_not_one_row_per_input_row_is_said(tmp_path, worker, body, rows, message):
    path = code_model(tmp_path, body)
    prediction = worker.predict(path, ModelInput(pd.DataFrame({"x": list(range(rows))})))
    assert any(re.search(message, w) for w in prediction.warnings), prediction.warnings
    assert len(prediction.warnings) == 1


def test_output_of_one_row_per_input_row_has_no_shape_warning(worker, iris_path):
    assert worker.predict(iris_path, ModelInput(iris_rows(4))).warnings == []


def test_output_that_cannot_be_sent_back_names_the_output_not_our_wrapper(tmp_path, worker):
    path = code_model(tmp_path, "return [object() for _ in range(len(model_input))]")
    with pytest.raises(PredictionError) as error:
        worker.predict(path, ModelInput(pd.DataFrame({"x": [1]})))
    assert str(error.value).startswith("The model's output cannot be sent back to the app")
    assert "RawPrediction" not in str(error.value)


def test_concurrent_downloads_of_one_version_agree(settings, seeded):
    from concurrent.futures import ThreadPoolExecutor

    home = settings.home / "cache" / "models"
    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(
            pool.map(lambda _: local_model_path("models:/diabetes-regressor/1", settings), range(4))
        )
    assert len(set(paths)) == 1 and (paths[0] / "MLmodel").is_file()
    assert not list(home.glob(".download-*"))


# ----------------------------------------------------------------------------- generic calls


def test_call_runs_a_function_in_the_worker_and_returns_its_result(worker):
    assert worker.call(os.getpid) == worker.pid != os.getpid()
    assert worker.call(sorted, [3, 1, 2]) == [1, 2, 3]
    assert worker.call(os.getenv, "PATH") == os.environ["PATH"]


def test_call_passes_large_arrays_both_ways(worker):
    big = np.arange(2_000_000, dtype=np.float64)  # 16 MB: through shared memory, not the socket
    assert worker.call(np.sum, big) == big.sum()
    back = worker.call(np.arange, 3_000_000)
    np.testing.assert_array_equal(back, np.arange(3_000_000))
    assert back.flags.writeable
    frame = worker.call(pd.DataFrame, {"a": big, "b": big * 2})
    pd.testing.assert_frame_equal(frame, pd.DataFrame({"a": big, "b": big * 2}))


def test_call_returns_text_columns_with_their_dtypes(worker):
    # Replies are not pickles (deploystudio.worker.replies): object and str columns still come
    # back as they were.
    frame = pd.DataFrame(
        {"o": np.array(["a", None, 3], dtype=object), "s": pd.array(["x", None, "z"], dtype="str")}
    )
    back = worker.call(pd.DataFrame, frame)
    pd.testing.assert_frame_equal(back, frame)
    assert back["o"].dtype == object


def test_call_raises_deploy_studio_errors_as_themselves(worker):
    with pytest.raises(InvalidModelUriError) as here:
        parse_model_uri("ftp://nowhere/model")
    with pytest.raises(InvalidModelUriError) as there:
        worker.call(parse_model_uri, "ftp://nowhere/model")
    assert str(there.value) == str(here.value)
    with pytest.raises(PredictionError, match="ValueError: invalid literal for int"):
        worker.call(int, "abc")
    assert worker.alive


def test_call_does_not_see_secrets_or_the_current_directory(worker, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cr3t")
    worker.stop()
    assert worker.call(os.getenv, "AZURE_CLIENT_SECRET") is None
    # The tests package is importable here (pytest runs from the repository), not in the worker:
    # what it imports does not depend on the directory the app was started from.
    importlib.import_module("tests.conftest")
    with pytest.raises(PredictionError, match="ModuleNotFoundError: No module named 'tests'"):
        worker.call(importlib.import_module, "tests.conftest")


def test_call_of_something_that_cannot_be_sent_is_a_type_error(worker):
    with pytest.raises(TypeError, match="module-level function"):
        worker.call(lambda: 1)
    with pytest.raises(PredictionError, match="cannot be sent back to the app"):
        worker.call(threading.Lock)  # a lock cannot be pickled
    assert worker.call(len, [1, 2]) == 2


def test_call_crash_timeout_and_memory_are_worker_errors(worker, tmp_path):
    with pytest.raises(
        PredictionWorkerError, match="The code crashed its worker, which exited with code 3"
    ):
        worker.call(os._exit, 3)
    with pytest.raises(PredictionWorkerError, match="The code did not answer within 2 s"):
        worker.call(time.sleep, 60, timeout_seconds=2)
    assert worker.call(len, "abc") == 3
    small = PredictionWorker(tmp_path / "small.log", memory_limit_mb=3072, timeout_seconds=60)
    try:
        with pytest.raises(
            PredictionWorkerError, match=r"ran out of memory in its worker \(limit 3072 MB\)"
        ):
            small.call(bytearray, 16 * 1024**3)
        assert small.call(len, "ab") == 2
    finally:
        small.stop()
