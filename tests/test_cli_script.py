"""`deploystudio script new|validate` against the seeded registry and the real inference server."""

from __future__ import annotations

import json

import pytest

from deploystudio.cli.main import EXIT_USER_ERROR, main

IRIS_URI = "models:/iris-classifier/1"
IRIS_CLASSES = {"setosa", "versicolor", "virginica"}


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_new_writes_a_folder_that_validates_in_the_server(capsys, seeded, tmp_path):
    folder = tmp_path / "iris-score"
    code, out, _ = run_cli(capsys, "script", "new", IRIS_URI, "--out", str(folder))
    assert code == 0, out
    assert sorted(p.name for p in folder.iterdir()) == [
        "conda.yaml",
        "image.txt",
        "sample-request.json",
        "score.py",
    ]
    assert "azureml-inference-server-http" in (folder / "conda.yaml").read_text()
    request = json.loads((folder / "sample-request.json").read_text())
    assert len(request["input_data"]["data"]) == 5

    code, out, err = run_cli(
        capsys, "script", "validate", str(folder), "--model", IRIS_URI, "--json"
    )
    result = json.loads(out)
    assert code == 0 and result["ok"], (result, err)
    assert len(result["response"]) == 5 and set(result["response"]) <= IRIS_CLASSES
    assert "Starting the Azure ML inference server" in err


def test_validate_reports_a_script_whose_init_raises(capsys, seeded, tmp_path):
    folder = tmp_path / "broken"
    run_cli(capsys, "script", "new", IRIS_URI, "--out", str(folder))
    script = folder / "score.py"
    script.write_text(
        script.read_text().replace(
            "def init():", "def init():\n    raise RuntimeError('no GPU')\n", 1
        )
    )
    code, out, _ = run_cli(capsys, "script", "validate", str(folder), "--model", IRIS_URI)
    assert code == 1
    assert "FAILED at start" in out and "RuntimeError: no GPU" in out


def test_user_errors_exit_2_with_the_message(capsys, seeded, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "script", "new", IRIS_URI, "--out", str(tmp_path / "taken"))
    assert code == EXIT_USER_ERROR and "is not empty" in err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"

    code, _, err = run_cli(capsys, "script", "validate", str(tmp_path), "--model", IRIS_URI)
    assert code == EXIT_USER_ERROR and "has no score.py" in err

    code, _, err = run_cli(
        capsys,
        "script",
        "new",
        "models:/cancer-risk-scorer/1",
        "--out",
        str(tmp_path / "p"),
        "--template",
        "probabilities",
    )
    assert code == EXIT_USER_ERROR and "scikit-learn" in err
