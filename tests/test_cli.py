import json
import os
import subprocess
import sys

import pytest

from deploystudio.cli.main import EXIT_USER_ERROR, main
from deploystudio.demo import DEMO_MODELS


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_json_lists_the_demo_models(capsys, seeded):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    models = {m["name"]: m for m in json.loads(out)}
    assert models["iris-classifier"]["aliases"] == {"champion": "1", "challenger": "2"}
    assert models["iris-classifier"]["latest_version"] == "2"


def test_models_table_with_filters(capsys, seeded):
    code, out, _ = run_cli(capsys, "models", "--tag", "team=demo", "--alias", "champion")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["name", "latest", "aliases"]
    assert sorted(line.split()[0] for line in lines[1:]) == [
        "diabetes-regressor",
        "iris-classifier",
    ]


def test_models_all_pages_through_everything(capsys, seeded):
    code, out, _ = run_cli(
        capsys, "models", "--tag", "team=demo", "--page-size", "2", "--all", "--json"
    )
    assert code == 0
    # Other tests register models of their own: count the demo team's, paged 2 at a time.
    assert sorted(m["name"] for m in json.loads(out)) == sorted(m.name for m in DEMO_MODELS)


def test_inspect_prints_signature_and_report(capsys, seeded):
    code, out, _ = run_cli(capsys, "inspect", "models:/iris-classifier@champion")
    assert code == 0
    assert "Model: models:/iris-classifier/1" in out
    assert "sepal_length: double" in out
    assert "[PASS] No-code deployment" in out


def test_inspect_json_of_the_azure_fixture(capsys, azure_diabetes_model):
    code, out, _ = run_cli(capsys, "inspect", str(azure_diabetes_model), "--json")
    assert code == 0
    data = json.loads(out)
    statuses = {c["name"]: c["status"] for c in data["report"]}
    assert statuses["Python version"] == "warn"
    assert statuses["Saved with scikit-learn"] == "warn"
    assert data["signature"]["input_kind"] == "columns"


def test_seed_demo_if_empty_does_nothing_on_a_populated_registry(capsys, seeded):
    code, out, _ = run_cli(capsys, "seed-demo", "--if-empty")
    assert code == 0
    assert "already has models" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "models:/no-such-model/1"], "does not exist"),
        (["inspect", "models:/iris"], "models:/NAME/VERSION"),
        (["models", "--tag", "=x"], "key=value"),
    ],
)
def test_bad_input_is_a_message_and_exit_code_2(capsys, seeded, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == EXIT_USER_ERROR
    assert message in err
    assert out == ""


def test_real_process_bad_folder_and_unreachable_server_exit_2_without_traceback(tmp_path):
    env = {**os.environ, "DEPLOYSTUDIO_HOME": str(tmp_path)}
    folder = subprocess.run(
        [sys.executable, "-m", "deploystudio.cli.main", "inspect", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert folder.returncode == EXIT_USER_ERROR
    assert "no MLmodel file" in folder.stderr and "Traceback" not in folder.stderr
    env["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    down = subprocess.run(
        [sys.executable, "-m", "deploystudio.cli.main", "models"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert down.returncode == EXIT_USER_ERROR
    assert "did not answer" in down.stderr and "Traceback" not in down.stderr


def test_predict_example_prints_predictions(capsys, seeded):
    code, out, err = run_cli(capsys, "predict", "models:/iris-classifier@champion", "--example")
    assert code == 0
    assert out.splitlines()[0].split() == ["prediction"]
    assert {line.split()[1] for line in out.splitlines()[1:]} <= {
        "setosa",
        "versicolor",
        "virginica",
    }
    assert "row(s)" in err


def test_predict_azure_request_on_azure_model_as_json(capsys, azure_diabetes_model):
    request = azure_diabetes_model.parent / "sample-request.json"
    code, out, _ = run_cli(
        capsys, "predict", str(azure_diabetes_model), "--input", str(request), "--json"
    )
    assert code == 0
    predictions = json.loads(out)["predictions"]
    assert len(predictions) == 1 and isinstance(predictions[0]["prediction"], float)


def test_predict_csv_with_explicit_format(capsys, seeded, tmp_path):
    rows = tmp_path / "rows.txt"
    rows.write_text("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n")
    code, out, _ = run_cli(
        capsys, "predict", "models:/iris-classifier/2", "--input", str(rows), "--format", "csv"
    )
    assert code == 0
    assert "setosa" in out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"input_data": {"columns": ["a"], \n', "line 2"),
        ('{"dataframe_split": {"columns": ["sepal_length"], "data": [[1.0]]}}', "petal_width"),
        ('{"inptus": []}', "inptus"),
    ],
)
def test_predict_bad_input_exits_2_with_the_reason(capsys, seeded, tmp_path, body, message):
    request = tmp_path / "request.json"
    request.write_text(body)
    code, out, err = run_cli(
        capsys, "predict", "models:/iris-classifier/1", "--input", str(request)
    )
    assert code == EXIT_USER_ERROR
    assert message in err and out == ""


def test_predict_checks_params_against_the_signature_as_it_reads_the_payload(
    capsys, seeded, tmp_path
):
    request = tmp_path / "request.json"
    columns = ["mean_radius", "mean_texture", "mean_smoothness", "worst_area", "worst_concavity"]
    request.write_text(
        json.dumps(
            {
                "dataframe_split": {"columns": columns, "data": [[14.0, 19.0, 0.1, 700.0, 0.3]]},
                "params": {"threshold": "high"},
            }
        )
    )
    code, out, err = run_cli(
        capsys, "predict", "models:/cancer-risk-scorer/1", "--input", str(request)
    )
    assert code == EXIT_USER_ERROR and out == ""
    assert "Param 'threshold' expects" in err and "'high'" in err


def test_predict_example_finds_an_input_example_json_mlmodel_does_not_list(
    capsys, azure_diabetes_model, tmp_path
):
    """The Azure example model with an MLflow 1.x style (bare split) input_example.json that
    its MLmodel does not list."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(azure_diabetes_model, model)
    assert "saved_input_example_info" not in (model / "MLmodel").read_text()
    request = json.loads((azure_diabetes_model.parent / "sample-request.json").read_text())
    (model / "input_example.json").write_text(json.dumps(request["input_data"]))
    code, out, err = run_cli(capsys, "predict", str(model), "--example")
    assert code == 0, err
    assert "prediction" in out and "1 row(s)" in err + out, (out, err)
    (model / "input_example.json").unlink()
    (model / "input_example.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text(json.dumps(request["input_data"]))
    code, _, err = run_cli(capsys, "predict", str(model), "--example")
    assert code == EXIT_USER_ERROR and "outside the model folder" in err


def test_predict_missing_file_and_missing_example(capsys, seeded, tmp_path):
    code, _, err = run_cli(
        capsys, "predict", "models:/iris-classifier/1", "--input", str(tmp_path / "nope.json")
    )
    assert code == EXIT_USER_ERROR and "Cannot read" in err
    code, _, err = run_cli(capsys, "predict", "models:/wine-no-signature/1", "--example")
    assert code == EXIT_USER_ERROR and "no input example" in err
