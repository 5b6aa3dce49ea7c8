"""Scoring-script templates served by the real Azure ML inference server, compared with pyfunc.

Starting a server with a model costs seconds, so the validations run once per module, a few
at a time, and each test reads its own result.
"""

from __future__ import annotations

import importlib.util
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from deploystudio import inference_server
from deploystudio.customization.scoring_script import (
    TEMPLATE_DESCRIPTIONS,
    ScriptTemplate,
    ValidationResult,
    available_templates,
    check_syntax,
    example_request,
    exception_line,
    generate_scoring_script,
    script_error_line,
    validate_batch_script,
    validate_scoring_script,
)
from deploystudio.errors import PayloadError, ScriptSyntaxError, ScriptTemplateError
from deploystudio.payloads import parse_payload
from deploystudio.prediction import local_model_path, predictions_frame
from tests.conftest import AZURE_DIABETES_MODEL

ENDLESS_TIMEOUT = 8
# Served through validate_scoring_script; iris has its own server below, for several requests.
NO_CODE_MODELS = ["diabetes", "cancer", "digits", "azure"]
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MODELS = {
    "iris": "models:/iris-classifier/1",
    "diabetes": "models:/diabetes-regressor/1",
    "cancer": "models:/cancer-risk-scorer/1",
    "digits": "models:/digits-tensor/1",
}
INIT_RAISES = """
def init():
    raise ValueError("the model file is corrupt")

def run(raw_data):
    return []
"""
NO_RUN = """
def init():
    pass
"""
ENDLESS_INIT = """
import time

def init():
    while True:
        time.sleep(0.1)

def run(raw_data):
    return []
"""
RUN_RAISES = """
def init():
    pass

def run(raw_data):
    raise KeyError("petal_width")
"""
BATCH_WRONG_ROWS = """
import pandas as pd

def init():
    pass

def run(mini_batch):
    return pd.DataFrame({"file_name": mini_batch})
"""
BATCH_NO_RUN = "def init():\n    pass\n"


@pytest.fixture(scope="module")
def paths(settings, registry, seeded) -> dict[str, Path]:
    found = {key: local_model_path(uri, settings, registry) for key, uri in MODELS.items()}
    return {**found, "azure": AZURE_DIABETES_MODEL}


@pytest.fixture(scope="module")
def bodies(paths) -> dict[str, dict]:
    found = {key: example_request(path) for key, path in paths.items() if key != "azure"}
    # A threshold far from the default changes the labels: proof that params reach the model.
    found["cancer"]["params"] = {"threshold": 0.97}
    found["azure"] = json.loads((AZURE_DIABETES_MODEL.parent / "sample-request.json").read_text())
    return found


@pytest.fixture(scope="module")
def iris_server_booting(paths, tmp_path_factory):
    """The no-code script for iris, served once for the tests that send several requests.

    Started before the validations below run, so that it boots while they do."""
    root = tmp_path_factory.mktemp("iris-server")
    script = root / "score.py"
    script.write_text(generate_scoring_script(ScriptTemplate.NO_CODE, paths["iris"]))
    model_dir = inference_server.stage_model(paths["iris"], root / "models")
    handle = inference_server.start(script, model_dir, root / "server.log")
    yield handle
    inference_server.stop(handle)


@pytest.fixture(scope="module")
def iris_server(iris_server_booting):
    inference_server.wait_ready(iris_server_booting, timeout_seconds=120)
    return iris_server_booting


def source(template: ScriptTemplate, path: Path) -> str:
    return generate_scoring_script(template, path)


@pytest.fixture(scope="module")
def results(
    paths, bodies, tmp_path_factory, iris_server_booting
) -> dict[str, tuple[ValidationResult, float]]:
    """Every validation of this module, three at a time; each with its wall-clock seconds."""
    work = tmp_path_factory.mktemp("validations")
    iris, iris_body = paths["iris"], bodies["iris"]
    # Both hooks edited: rows reversed before the model, labels upper-cased after it.
    edited = (
        source(ScriptTemplate.PRE_POST, iris)
        .replace("    return data\n", "    return data.iloc[::-1]\n")
        .replace(
            "    return predictions\n", "    return [label.upper() for label in predictions]\n"
        )
    )
    iris_frame = mlflow.models.Model.load(str(iris)).load_input_example(str(iris))
    online = {
        "iris-probabilities": (source(ScriptTemplate.PROBABILITIES, iris), iris, iris_body),
        "iris-pre-post-edited": (edited, iris, iris_body),
        "init-raises": (INIT_RAISES, iris, iris_body),
        "no-run": (NO_RUN, iris, iris_body),
        "endless-init": (ENDLESS_INIT, iris, iris_body),
        "run-raises": (RUN_RAISES, iris, iris_body),
    }
    for key in NO_CODE_MODELS:
        online[f"{key}-no-code"] = (
            source(ScriptTemplate.NO_CODE, paths[key]),
            paths[key],
            bodies[key],
        )
    batch = {
        "batch-iris": (source(ScriptTemplate.BATCH, iris), iris, iris_frame),
        "batch-wrong-rows": (BATCH_WRONG_ROWS, iris, iris_frame),
        "batch-no-run": (BATCH_NO_RUN, iris, iris_frame),
    }

    def validate(key: str) -> tuple[str, tuple[ValidationResult, float]]:
        started = time.monotonic()
        folder = work / key
        if key in batch:
            result = validate_batch_script(*batch[key], folder, timeout_seconds=120)
        else:
            script, path, body = online[key]
            timeout = ENDLESS_TIMEOUT if key == "endless-init" else 120
            result = validate_scoring_script(script, path, body, folder, timeout_seconds=timeout)
        return key, (result, time.monotonic() - started)

    # The endless one first: its fixed wait overlaps with the others.
    keys = ["endless-init", *(k for k in online if k != "endless-init"), *batch]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(validate, keys))


def pyfunc_predictions(path: Path, body: dict):
    """What the model predicts in this process for the same request body."""
    model = mlflow.pyfunc.load_model(str(path))
    model_input = parse_payload(json.dumps(body), model.metadata.get_input_schema())
    return model.predict(model_input.data, params=model_input.params)


def as_frame(response: list) -> pd.DataFrame:
    """The server's JSON list as a frame: records for tables, one value per row otherwise."""
    if response and isinstance(response[0], dict):
        return pd.DataFrame(response)
    return predictions_frame(np.asarray(response))


def assert_served_ok(result: ValidationResult) -> None:
    assert result.ok, f"{result.message}\n{result.log_tail}"
    assert result.stage == "done"
    assert result.status_code == 200


@pytest.mark.parametrize("key", NO_CODE_MODELS)
def test_no_code_script_answers_as_pyfunc(key, results, paths, bodies):
    result, _ = results[f"{key}-no-code"]
    assert_served_ok(result)
    assert isinstance(result.response, list)  # a bare JSON list, as Azure's automatic scoring
    expected = predictions_frame(pyfunc_predictions(paths[key], bodies[key]))
    pd.testing.assert_frame_equal(as_frame(result.response), expected, check_dtype=False)


def test_params_reach_the_model(results):
    result, _ = results["cancer-no-code"]
    labels = {row["label"] for row in result.response}
    probabilities = [row["probability"] for row in result.response]
    # At threshold 0.97 only near-certain rows are malignant.
    assert labels == {"malignant" if p >= 0.97 else "benign" for p in probabilities}


def test_pre_post_hooks_run_around_the_model(results, paths, bodies):
    result, _ = results["iris-pre-post-edited"]
    assert_served_ok(result)
    expected = pyfunc_predictions(paths["iris"], bodies["iris"])
    assert result.response == [label.upper() for label in expected[::-1]]


def test_probabilities_template_answers_predict_proba(results, paths, bodies):
    result, _ = results["iris-probabilities"]
    assert_served_ok(result)
    classifier = mlflow.sklearn.load_model(str(paths["iris"]))
    frame = parse_payload(json.dumps(bodies["iris"])).data
    expected = classifier.predict_proba(frame)
    labels = [str(label) for label in classifier.classes_]
    assert [list(row) for row in result.response] == [labels] * len(frame)
    served = np.array([[row[label] for label in labels] for row in result.response])
    np.testing.assert_allclose(served, expected)


def test_probabilities_of_a_regressor_fail_in_init(paths, tmp_path, monkeypatch):
    # The script's own init(), run here rather than in a server: the server's handling of an
    # init() that raises is tested with INIT_RAISES.
    script = tmp_path / "score.py"
    script.write_text(generate_scoring_script(ScriptTemplate.PROBABILITIES, paths["diabetes"]))
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(paths["diabetes"].parent))
    spec = importlib.util.spec_from_file_location("probabilities_score", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TypeError, match=r"Pipeline has no predict_proba\(\)"):
        module.init()


def test_probabilities_template_needs_a_sklearn_flavor(paths):
    assert ScriptTemplate.PROBABILITIES not in available_templates(paths["cancer"])
    assert ScriptTemplate.PROBABILITIES in available_templates(paths["iris"])
    with pytest.raises(ScriptTemplateError, match="sklearn flavor"):
        generate_scoring_script(ScriptTemplate.PROBABILITIES, paths["cancer"])


def test_iris_no_code_server_answers_as_pyfunc(iris_server, paths, bodies):
    status, answer = inference_server.score(iris_server, bodies["iris"])
    assert status == 200
    assert answer == list(pyfunc_predictions(paths["iris"], bodies["iris"]))


def test_one_row_without_index_is_a_table(iris_server):
    body = {"input_data": {"columns": IRIS_COLUMNS, "data": [[5.1, 3.5, 1.4, 0.2]]}}
    assert inference_server.score(iris_server, body) == (200, ["setosa"])


def test_request_that_does_not_fit_gets_400_with_the_reason(iris_server):
    bad_columns = {"input_data": {"columns": ["petal"], "data": [[1.0]]}}
    status, answer = inference_server.score(iris_server, bad_columns)
    assert status == 400
    assert "missing inputs" in answer["message"]
    for body, reason in [
        ({"dataframe_split": {}}, '"input_data" key'),
        ({"input_data": 3}, "must be a table"),
        ({"input_data": [[1, 2, 3, 4]], "params": [1]}, '"params" must be a JSON object'),
        ("not json", "Expecting value"),
    ]:
        status, answer = inference_server.score(iris_server, body)
        assert (status, reason in answer["message"]) == (400, True), answer


def test_syntax_error_gives_line_and_column_and_starts_nothing(paths, tmp_path):
    result = validate_scoring_script(
        "def init():\n    pass\n\ndef run(raw_data)\n    return 1\n",
        paths["iris"],
        {},
        tmp_path / "work",
    )
    assert (result.ok, result.stage) == (False, "syntax")
    assert "line 4, column 18: expected ':'" in result.message
    assert result.error_line == 4  # what the Customize page's editor marks
    assert not (tmp_path / "work").exists()  # no folder, no server


def test_init_that_raises_is_named_with_its_exception(results):
    result, _ = results["init-raises"]
    assert (result.ok, result.stage) == (False, "start")
    assert result.message == "init() raised ValueError: the model file is corrupt"
    assert "Worker failed to boot" in result.log_tail
    # The raising line of score.py, from the traceback the server logged (line 1 is blank).
    assert result.error_line == 3


def test_missing_run_is_named(results):
    result, _ = results["no-run"]
    assert (result.ok, result.stage) == (False, "start")
    assert "no run() function" in result.message
    assert result.error_line is None  # no line of the script raised


def test_endless_init_times_out_and_leaves_no_process(results, tmp_path_factory):
    result, wall_seconds = results["endless-init"]
    assert (result.ok, result.stage) == (False, "start")
    assert f"not ready within {ENDLESS_TIMEOUT} s" in result.message
    # The wait, then at most a short stop: the server is killed, not waited for.
    assert ENDLESS_TIMEOUT <= wall_seconds < ENDLESS_TIMEOUT + 6
    assert servers_under(tmp_path_factory.getbasetemp() / "validations") == []


def servers_under(folder: Path) -> list[int]:
    """Processes whose entry script lies under `folder` (servers our validations started)."""
    marker = f"AZUREML_ENTRY_SCRIPT={folder}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_run_that_raises_gives_the_500_and_the_exception(results):
    result, _ = results["run-raises"]
    assert (result.ok, result.stage, result.status_code) == (False, "score", 500)
    assert result.message == "/score answered 500: run() raised KeyError: 'petal_width'"
    assert result.error_line == 6


def test_validation_leaves_no_files_behind(results, tmp_path_factory):
    folders = list(Path(tmp_path_factory.getbasetemp()).glob("validations*/*/validate-*"))
    assert folders == []


def test_batch_template_scores_one_row_per_input_row(results, paths):
    result, _ = results["batch-iris"]
    assert result.ok, f"{result.message}\n{result.log_tail}"
    served = pd.DataFrame(result.response)
    model = mlflow.pyfunc.load_model(str(paths["iris"]))
    frame = mlflow.models.Model.load(str(paths["iris"])).load_input_example(str(paths["iris"]))
    assert list(served["file_name"]) == ["example.csv"] * len(frame)
    assert list(served["prediction"]) == list(model.predict(frame))


def test_batch_script_with_too_few_rows_fails(results):
    result, _ = results["batch-wrong-rows"]
    assert (result.ok, result.stage) == (False, "score")
    assert "returned 1 rows for 5 input rows" in result.message


def test_batch_script_without_run_fails(results):
    result, _ = results["batch-no-run"]
    assert (result.ok, result.stage) == (False, "start")
    assert "no run() function" in result.message
    assert result.error_line is None  # no line of the script raised


def test_generated_scripts_stand_alone(paths):
    for template in available_templates(paths["iris"]):
        text = generate_scoring_script(template, paths["iris"])
        check_syntax(text)
        assert "deploystudio" not in text.replace("Deploy Studio", "")
        assert "# @include" not in text
        assert "def init():" in text and "def run(" in text
        assert TEMPLATE_DESCRIPTIONS[template]


def test_check_syntax_reports_line_and_column():
    with pytest.raises(ScriptSyntaxError, match=r"^line 2, column 4: invalid syntax"):
        check_syntax("x = 1\nif = 2\n")
    with pytest.raises(ScriptSyntaxError, match="line 1, column 6"):
        check_syntax("a = 1\x00")
    with pytest.raises(ScriptSyntaxError, match="line 3, column 5: 'return' outside function"):
        check_syntax("import os\nif os:\n    return 1\n")  # the compiler's error, not the parser's
    check_syntax("import os\n")


def test_example_request_is_an_azure_body(paths):
    iris = example_request(paths["iris"])
    assert set(iris) == {"input_data"}
    assert iris["input_data"]["columns"][0] == "sepal_length"
    assert example_request(paths["cancer"])["params"] == {"threshold": 0.5}
    digits = example_request(paths["digits"])["input_data"]
    assert np.asarray(digits).shape == (3, 8, 8)
    with pytest.raises(PayloadError, match="no input example"):
        example_request(AZURE_DIABETES_MODEL)


def test_script_error_line_is_the_scripts_deepest_frame():
    log = (
        "Traceback (most recent call last):\n"
        '  File "/srv/site-packages/azureml_inference_server_http/server/user_script.py", '
        "line 132, in invoke_run\n"
        '  File "/data/validate-x/score.py", line 21, in run\n'
        '  File "/data/validate-x/score.py", line 9, in _predict\n'
        '  File "/srv/site-packages/mlflow/pyfunc/__init__.py", line 800, in predict\n'
        "ValueError: boom\n"
    )
    assert script_error_line(log, "score.py") == 9
    assert script_error_line(log, "batch_score.py") is None
    # A file that only ends like the script is another file.
    assert script_error_line('  File "/x/my_score.py", line 3, in f\n', "score.py") is None


def test_exception_line_skips_the_server_wrapper():
    log = (
        "Traceback (most recent call last):\nValueError: boom\n\nThe above exception was the "
        "direct cause\nazureml_inference_server_http.server.user_script.UserScriptException: "
        "Caught an unhandled exception\n"
    )
    assert exception_line(log) == "ValueError: boom"
    assert exception_line("all good\n") is None
