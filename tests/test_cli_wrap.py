"""`deploystudio wrap`: build, check and register a wrapper from the command line."""

from __future__ import annotations

import json

import mlflow
import pytest
from numpy.testing import assert_allclose

from deploystudio.cli.main import EXIT_USER_ERROR, main
from deploystudio.customization.wrap_registration import WRAPPED_FROM_TAG, WRAPPER_OPTIONS_TAG
from deploystudio.customization.wrapping import custom_code_template
from deploystudio.prediction import local_model_path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_wrap_proba_json_registers_a_version_of_the_aliased_source(
    capsys, settings, registry, seeded
):
    code, out, err = run_cli(
        capsys,
        "wrap",
        "models:/iris-classifier@champion",
        "--kind",
        "proba",
        "--register-as",
        "test-cli-wrap-iris-proba",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["model_uri"] == "models:/test-cli-wrap-iris-proba/1"
    assert list(result["wrapped"][0]) == ["setosa", "versicolor", "virginica"]
    assert "Uploading" in err and "Registered models:/test-cli-wrap-iris-proba/1" in err
    version = registry.get_version("test-cli-wrap-iris-proba", "1")
    assert version.tags[WRAPPED_FROM_TAG] == "models:/iris-classifier/1"  # the alias, resolved
    iris = mlflow.sklearn.load_model(
        str(local_model_path("models:/iris-classifier/1", settings, registry))
    )
    wrapped = mlflow.pyfunc.load_model(str(local_model_path(result["model_uri"], settings)))
    example = wrapped.input_example
    assert_allclose(wrapped.predict(example).to_numpy(), iris.predict_proba(example))


def test_wrap_pipeline_with_options_prints_progress_and_the_uri(capsys, registry, seeded):
    code, out, err = run_cli(
        capsys,
        "wrap",
        "models:/diabetes-regressor/1",
        "--kind",
        "pipeline",
        "--options",
        '{"pipeline_steps": ["impute-median"]}',
        "--register-as",
        "test-cli-wrap-diabetes-pipeline",
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("Building the pipeline wrapper of models:/diabetes-regressor/1")
    assert "original: prediction" in out and "wrapped: prediction" in out
    assert lines[-1] == "models:/test-cli-wrap-diabetes-pipeline/1"
    version = registry.get_version("test-cli-wrap-diabetes-pipeline", "1")
    assert json.loads(version.tags[WRAPPER_OPTIONS_TAG]) == {"pipeline_steps": ["impute-median"]}


def test_wrap_custom_code_from_a_file(capsys, seeded, tmp_path):
    code_file = tmp_path / "wrapper.py"
    code_file.write_text(custom_code_template())
    code, out, err = run_cli(
        capsys,
        "wrap",
        "models:/iris-classifier/2",
        "--kind",
        "custom",
        "--code",
        str(code_file),
        "--register-as",
        "test-cli-wrap-iris-custom",
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "models:/test-cli-wrap-iris-custom/1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "pre-post", "--options", "{not json"], "--options is not valid JSON"),
        (["--kind", "custom"], "--kind custom needs --code FILE"),
        (["--kind", "proba", "--options", '{"steps": []}'], "Unknown options ['steps']"),
        (["--kind", "custom", "--code", "/nonexistent/wrapper.py"], "Cannot read"),
    ],
    ids=["bad-json", "custom-without-code", "unknown-option", "missing-code-file"],
)
def test_wrap_user_errors_exit_2_with_the_message(capsys, seeded, args, message):
    code, out, err = run_cli(
        capsys, "wrap", "models:/iris-classifier/1", *args, "--register-as", "test-cli-never"
    )
    assert code == EXIT_USER_ERROR
    assert message in err and out == ""


def test_wrap_a_kind_that_does_not_fit_registers_nothing(capsys, registry, seeded):
    code, _, err = run_cli(
        capsys,
        "wrap",
        "models:/cancer-risk-scorer/1",
        "--kind",
        "pipeline",
        "--options",
        '{"pipeline_steps": ["impute-zero"]}',
        "--register-as",
        "test-cli-never",
    )
    assert code == EXIT_USER_ERROR
    assert "not an sklearn-flavor model" in err
    assert not registry.client.search_registered_models(filter_string="name='test-cli-never'")
