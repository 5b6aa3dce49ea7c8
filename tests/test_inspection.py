import os
import shutil

import numpy as np
import pandas as pd
import pytest

from deploystudio.errors import InvalidModelError, ModelNotFoundError, UnsafePathError
from deploystudio.inspection import CheckStatus, inspect_model
from deploystudio.model_files import LocalModelFiles, safe_relative_path


def checks_by_name(inspection):
    return {c.name: c for c in inspection.report}


def test_classifier_by_alias_resolves_to_its_version(settings, seeded):
    inspection = inspect_model("models:/iris-classifier@champion", settings)
    assert inspection.resolved_uri == "models:/iris-classifier/1"
    assert inspection.version.aliases == ("champion",)
    assert {f.name for f in inspection.flavors} == {"python_function", "sklearn"}
    sklearn = next(f for f in inspection.flavors if f.name == "sklearn")
    assert sklearn.framework_version and sklearn.serialization_format
    pyfunc = next(f for f in inspection.flavors if f.name == "python_function")
    assert pyfunc.loader_module == "mlflow.sklearn"


def test_classifier_signature_example_run_and_clean_report(settings, seeded):
    inspection = inspect_model("models:/iris-classifier/2", settings)
    signature = inspection.signature
    assert signature.input_kind == "columns"
    assert [(f.name, f.type) for f in signature.inputs] == [
        ("sepal_length", "double"),
        ("sepal_width", "double"),
        ("petal_length", "double"),
        ("petal_width", "double"),
    ]
    assert isinstance(inspection.input_example, pd.DataFrame)
    assert list(inspection.input_example.columns) == [f.name for f in signature.inputs]
    assert inspection.run.metrics["accuracy"] > 0.5
    assert {p.path for p in inspection.artifacts} >= {"MLmodel", "requirements.txt"}
    assert inspection.total_size_bytes > 0
    assert all(c.status is CheckStatus.PASS for c in inspection.report), inspection.report


def test_model_without_signature_gets_warnings_with_fixes(settings, seeded):
    inspection = inspect_model("models:/wine-no-signature/1", settings)
    checks = checks_by_name(inspection)
    assert inspection.signature is None
    for name in ("Signature", "Input example", "Request format", "Requirements pinned"):
        assert checks[name].status is CheckStatus.WARN
        assert checks[name].fix
    assert "scikit-learn" in checks["Requirements pinned"].detail
    batching = checks["Adaptive batching"]
    assert batching.status is CheckStatus.WARN and "signature" in batching.detail


def test_custom_pyfunc_params_are_described(settings, seeded):
    inspection = inspect_model("models:/cancer-risk-scorer/1", settings)
    params = inspection.signature.params
    assert [(p.name, p.type, p.default) for p in params] == [("threshold", "double", 0.5)]
    assert [f.name for f in inspection.signature.outputs] == ["probability", "label"]
    assert inspection.input_example_params == {"threshold": 0.5}
    assert "params" in checks_by_name(inspection)["Request format"].detail
    # One row of probability and label per input row: it may be batched.
    assert checks_by_name(inspection)["Adaptive batching"].status is CheckStatus.PASS


def test_tensor_model_signature_and_example(settings, seeded):
    inspection = inspect_model("models:/digits-tensor/1", settings)
    signature = inspection.signature
    assert signature.input_kind == "tensors"
    assert [(f.type, f.shape) for f in signature.inputs] == [("float32", (-1, 8, 8))]
    assert isinstance(inspection.input_example, np.ndarray)
    assert inspection.input_example.shape[1:] == (8, 8)
    assert "list" in checks_by_name(inspection)["Request format"].detail
    batching = checks_by_name(inspection)["Adaptive batching"]
    assert batching.status is CheckStatus.WARN and "tensors" in batching.detail


def test_runs_uri_reads_the_same_model(settings, registry, seeded):
    version = registry.get_version("diabetes-regressor", "1")
    inspection = inspect_model(f"runs:/{version.run_id}/model", settings)
    assert [f.name for f in inspection.signature.inputs][:2] == ["age", "sex"]
    assert inspection.run.run_id == version.run_id
    assert {a.path for a in inspection.artifacts} >= {"MLmodel", "requirements.txt"}
    with pytest.raises(ModelNotFoundError):
        inspect_model("runs:/0123456789abcdef0123456789abcdef/model", settings)


def test_azure_fixture_model_flags_version_differences(settings, azure_diabetes_model):
    inspection = inspect_model(str(azure_diabetes_model), settings)
    checks = checks_by_name(inspection)
    assert inspection.signature.input_kind == "columns"
    assert len(inspection.signature.inputs) == 10
    assert inspection.environment.model_python_version == "3.12.3"
    assert checks["Python version"].status is CheckStatus.WARN
    assert "3.12.3" in checks["Python version"].detail
    saved = checks["Saved with scikit-learn"]
    assert saved.status is CheckStatus.WARN
    assert "1.1.2" in saved.detail and "1.6.1" in saved.detail
    assert checks["Package scikit-learn"].status is CheckStatus.WARN
    assert checks["MLflow version"].status is CheckStatus.WARN
    assert "mlflow" in checks["Requirements pinned"].detail
    assert inspection.created is None  # the fixture's MLmodel has no creation time
    assert inspection.run is None


def test_unknown_model_and_version(settings, seeded):
    with pytest.raises(ModelNotFoundError):
        inspect_model("models:/no-such-model/1", settings)
    with pytest.raises(ModelNotFoundError):
        inspect_model("models:/iris-classifier/42", settings)
    with pytest.raises(ModelNotFoundError):
        inspect_model("models:/iris-classifier@nope", settings)


def test_folder_without_mlmodel(settings, tmp_path):
    with pytest.raises(InvalidModelError, match="no MLmodel"):
        inspect_model(str(tmp_path), settings)
    with pytest.raises(InvalidModelError, match="not a folder"):
        inspect_model(str(tmp_path / "missing"), settings)


@pytest.mark.parametrize(
    "content",
    [
        "flavors: [unclosed",
        "just a string",
        "flavors: {}",
        "flavors:\n  python_function: 1\nsignature:\n  inputs: 'not json'\n",
    ],
)
def test_corrupt_mlmodel_is_a_clear_error(settings, tmp_path, content):
    (tmp_path / "MLmodel").write_text(content)
    with pytest.raises(InvalidModelError, match="MLmodel"):
        inspect_model(str(tmp_path), settings)


def test_pages_may_open_local_folders_only_inside_configured_roots(
    settings, tmp_path, azure_diabetes_model
):
    with pytest.raises(UnsafePathError, match="DEPLOYSTUDIO_MODEL_ROOTS"):
        inspect_model(str(azure_diabetes_model), settings, allowed_local_roots=(tmp_path,))
    copy = tmp_path / "model"
    shutil.copytree(azure_diabetes_model, copy)
    assert inspect_model(str(copy), settings, allowed_local_roots=(tmp_path,)).signature


@pytest.mark.parametrize(
    "path",
    [
        "../secret",
        "a/../../b",
        "/etc/passwd",
        "%2e%2e/x",
        "a/%2e%2e/%2e%2e/x",
        "file:///etc/x",
        "x#/../..",
        "x?y=1",
        "C:\\x",
        "a\\..\\..\\b",
        "~/x",
        "",
    ],
)
def test_unsafe_relative_paths_are_refused(path):
    with pytest.raises(UnsafePathError):
        safe_relative_path(path)


def test_safe_relative_paths_are_normalised():
    assert safe_relative_path("a/./b/../MLmodel") == "a/MLmodel"
    assert safe_relative_path("input_example.json") == "input_example.json"


def test_input_example_path_from_mlmodel_cannot_leave_the_model(settings, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"columns": ["a"], "data": [[1]]}')
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
        "saved_input_example_info:\n  artifact_path: ../outside.json\n  type: dataframe\n"
    )
    inspection = inspect_model(str(model), settings)
    assert inspection.input_example is None
    assert "not a plain relative path" in inspection.input_example_error or "outside" in (
        inspection.input_example_error
    )


def test_symlinks_out_of_the_model_are_never_followed(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    os.symlink(secret, model / "requirements.txt")
    os.symlink(tmp_path, model / "escape")
    files = LocalModelFiles(model)
    with pytest.raises(UnsafePathError):
        files.fetch("requirements.txt")
    entries, _ = files.list_artifacts()
    paths = {e.path for e in entries}
    assert "escape/secret.txt" not in paths and "escape/model/MLmodel" not in paths
    assert {"MLmodel", "requirements.txt", "escape"} <= paths


def test_symlinked_requirements_file_is_a_report_line_and_is_never_read(settings, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (tmp_path / "secret.txt").write_text("mlflow==0.0.1")
    os.symlink(tmp_path / "secret.txt", model / "requirements.txt")
    inspection = inspect_model(str(model), settings)
    assert inspection.environment.requirements_txt is None
    assert inspection.environment.requirements == []
    check = next(c for c in inspection.report if c.name == "Environment files")
    assert check.status is CheckStatus.WARN
    assert "'requirements.txt' leads outside the model folder" in check.detail
    pinned = next(c for c in inspection.report if c.name == "Requirements pinned")
    assert pinned.detail.startswith("requirements.txt was not read (see Environment files)")
    assert "mlflow==0.0.1" not in str(inspection)


def test_inspection_of_registry_models_downloads_only_small_files(settings, seeded):
    inspection = inspect_model("models:/iris-classifier/1", settings)
    cached = {p.name for p in settings.inspection_cache.rglob("*") if p.is_file()}
    assert "MLmodel" in cached
    assert "model.skops" not in cached and "model.pkl" not in cached
    assert any(a.path.startswith("model.") for a in inspection.artifacts)
