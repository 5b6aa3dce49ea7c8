"""Log-time wrappers built around the real demo models, saved, loaded back and registered."""

from __future__ import annotations

import importlib.metadata
import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model, infer_signature
from numpy.testing import assert_allclose
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from deploystudio.customization import wrapper_models
from deploystudio.customization.wrap_registration import (
    CUSTOMIZE_EXPERIMENT,
    WRAPPED_FROM_TAG,
    WRAPPER_KIND_TAG,
    WRAPPER_OPTIONS_TAG,
    register_wrapped_model,
)
from deploystudio.customization.wrapping import (
    PIPELINE_STEPS,
    PostProcessing,
    PreProcessing,
    WrapperKind,
    WrapSpec,
    available_kinds,
    build_wrapped_model,
    custom_code_template,
    spec_from_options,
)
from deploystudio.errors import WrapError
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.process import PredictionWorker
from deploystudio.worker.sandbox import Access
from tests.conftest import settings_for

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def paths(settings, registry, seeded) -> dict[str, Path]:
    names = ["iris-classifier", "diabetes-regressor", "wine-no-signature", "cancer-risk-scorer"]
    return {
        name: local_model_path(f"models:/{name}/1", settings, registry)
        for name in [*names, "digits-tensor"]
    }


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wrap-work")


@pytest.fixture(scope="module")
def iris_estimator(paths):
    return mlflow.sklearn.load_model(str(paths["iris-classifier"]))


@pytest.fixture(scope="module")
def iris_example(paths) -> pd.DataFrame:
    path = paths["iris-classifier"]
    return Model.load(str(path / "MLmodel")).load_input_example(str(path))


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory) -> tuple[Path, LogisticRegression]:
    """A binary sklearn classifier with integer labels 0/1, saved as a local model folder."""
    data = datasets.load_breast_cancer(as_frame=True)
    x = data.frame[["mean radius", "mean texture", "worst area"]].rename(
        columns=lambda c: c.replace(" ", "_")
    )
    model = LogisticRegression(max_iter=5000).fit(x, data.target)
    example = x.iloc[::60].head(8).reset_index(drop=True)
    path = tmp_path_factory.mktemp("binary") / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(example, model.predict(example)),
        input_example=example,
        pip_requirements=[f"scikit-learn=={importlib.metadata.version('scikit-learn')}"],
    )
    return path, model


@pytest.fixture(scope="module")
def proba_preview(paths, work_dir):
    return build_wrapped_model(
        paths["iris-classifier"], WrapSpec(WrapperKind.PROBABILITIES), work_dir
    )


@pytest.fixture(scope="module")
def pipeline_preview(paths, work_dir):
    spec = WrapSpec(WrapperKind.PIPELINE, pipeline_steps=("impute-median", "clip-outliers"))
    return build_wrapped_model(paths["diabetes-regressor"], spec, work_dir)


def saved_predictions(preview, data=None):
    model = mlflow.pyfunc.load_model(str(preview.saved_path))
    return model.predict(preview.example if data is None else data)


# --- what applies to which model, read from the MLmodel only ---


def test_available_kinds_from_the_mlmodel(paths):
    assert available_kinds(paths["iris-classifier"]) == dict.fromkeys(WrapperKind)
    for name in ("cancer-risk-scorer", "digits-tensor"):
        kinds = available_kinds(paths[name])
        assert "not an sklearn-flavor model" in kinds[WrapperKind.PIPELINE]
        assert kinds[WrapperKind.PROBABILITIES] is None


def test_available_kinds_never_unpickles_the_model(paths, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(paths["iris-classifier"], broken)
    (broken / "model.skops").write_bytes(b"not a model")
    assert available_kinds(broken)[WrapperKind.PIPELINE] is None


# --- probabilities ---


def test_probabilities_equal_the_original_predict_proba(proba_preview, iris_estimator):
    example = proba_preview.example
    wrapped = saved_predictions(proba_preview)
    assert list(wrapped.columns) == [str(c) for c in iris_estimator.classes_] == IRIS_CLASSES
    assert_allclose(wrapped.to_numpy(), iris_estimator.predict_proba(example), rtol=1e-12)
    assert_allclose(proba_preview.wrapped.to_numpy(), iris_estimator.predict_proba(example))
    assert list(proba_preview.original["prediction"]) == list(iris_estimator.predict(example))


def test_new_version_has_signature_example_and_pinned_requirements(proba_preview, paths):
    saved = Model.load(str(proba_preview.saved_path / "MLmodel"))
    assert [c["name"] for c in json.loads(proba_preview.signature["outputs"])] == IRIS_CLASSES
    assert saved.signature.inputs.input_names() == IRIS_FEATURES
    pd.testing.assert_frame_equal(
        saved.load_input_example(str(proba_preview.saved_path)), proba_preview.example
    )
    requirements = (proba_preview.saved_path / "requirements.txt").read_text().split()
    source = (paths["iris-classifier"] / "requirements.txt").read_text().split()
    assert set(source) <= set(requirements)
    for package in ("mlflow", "numpy", "pandas"):
        assert f"{package}=={importlib.metadata.version(package)}" in requirements
    assert all("==" in line for line in requirements)
    # The wrapper is readable code with its options, and the source model travels with it.
    code = (proba_preview.saved_path / "wrapper.py").read_text()
    assert '"kind": "proba"' in code and "set_model(WrappedModel(OPTIONS))" in code
    assert (proba_preview.saved_path / "artifacts" / "source_model" / "MLmodel").is_file()


def test_unpinned_source_lines_are_kept_and_ours_are_pinned(paths, work_dir):
    wine = paths["wine-no-signature"]
    with pytest.raises(WrapError, match="no input example"):
        build_wrapped_model(wine, WrapSpec(WrapperKind.PROBABILITIES), work_dir)
    example = pd.DataFrame([datasets.load_wine().data[0]], columns=_wine_columns())
    preview = build_wrapped_model(wine, WrapSpec(WrapperKind.PROBABILITIES), work_dir, example)
    requirements = (preview.saved_path / "requirements.txt").read_text().split()
    # The source's own unpinned line stays as it was; the one the wrapper needs gets a pin.
    assert "scikit-learn" in requirements and "numpy" not in requirements
    assert f"numpy=={importlib.metadata.version('numpy')}" in requirements
    assert list(preview.wrapped.columns) == ["0", "1", "2"]


def _wine_columns() -> list[str]:
    return [c.replace(" ", "_") for c in datasets.load_wine().feature_names]


def test_probabilities_need_predict_proba(paths, work_dir):
    folders_before = set(work_dir.iterdir())
    with pytest.raises(WrapError, match="has no predict_proba"):
        build_wrapped_model(paths["diabetes-regressor"], WrapSpec("proba"), work_dir)
    with pytest.raises(WrapError, match="ThresholdedRiskModel has none"):
        build_wrapped_model(paths["cancer-risk-scorer"], WrapSpec("proba"), work_dir)
    assert set(work_dir.iterdir()) == folders_before  # a failed build leaves nothing behind


def test_saved_wrappers_load_and_predict_without_deploystudio(
    proba_preview, pipeline_preview, tmp_path
):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["deploystudio"] = None  # any import of it now fails
        import json
        import mlflow
        proba_path = {str(proba_preview.saved_path)!r}
        pipeline_path = {str(pipeline_preview.saved_path)!r}
        proba = mlflow.pyfunc.load_model(proba_path)
        pipeline = mlflow.sklearn.load_model(pipeline_path)
        pipeline_example = mlflow.models.Model.load(pipeline_path).load_input_example(pipeline_path)
        print(json.dumps({{
            "proba": proba.predict(proba.input_example).to_numpy().tolist(),
            "pipeline": pipeline.predict(pipeline_example).tolist(),
            "loaded": sorted(m for m in sys.modules if m.startswith("deploystudio")),
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=scrubbed_environment(),
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert_allclose(out["proba"], proba_preview.wrapped.to_numpy())
    assert_allclose(out["pipeline"], pipeline_preview.wrapped["prediction"].to_numpy())
    assert out["loaded"] == ["deploystudio"]  # only the blocked placeholder


def test_the_build_runs_in_the_prediction_worker(paths, tmp_path):
    """As the page runs it: model code in the worker, the preview and errors sent back."""
    worker = PredictionWorker(tmp_path / "worker.log", timeout_seconds=180)
    try:
        iris, work = paths["iris-classifier"], tmp_path / "work"
        access = Access.of(read=[iris], write=[work])
        preview = worker.call(build_wrapped_model, iris, WrapSpec("proba"), work, access=access)
        assert list(preview.wrapped.columns) == IRIS_CLASSES
        assert (preview.saved_path / "MLmodel").is_file()
        broken = WrapSpec("custom", custom_code="import module_that_is_not_here\n")
        with pytest.raises(WrapError, match="'module_that_is_not_here'"):
            worker.call(build_wrapped_model, iris, broken, work, access=access)
    finally:
        worker.stop()


# --- pre-processing: each step on its own ---


def _iris_frame(example: pd.DataFrame, **extra) -> pd.DataFrame:
    return example.assign(**extra)


def test_pre_rename_takes_the_incoming_names(paths, work_dir, iris_estimator):
    spec = WrapSpec("pre-post", pre=PreProcessing(rename_columns={"sl": "sepal_length"}))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir)
    assert list(preview.example.columns) == ["sl", *IRIS_FEATURES[1:]]
    assert json.loads(preview.signature["inputs"])[0]["name"] == "sl"
    expected = iris_estimator.predict(preview.example.rename(columns={"sl": "sepal_length"}))
    assert list(saved_predictions(preview)["prediction"]) == list(expected)


def test_pre_select_keeps_and_orders_columns(paths, work_dir, iris_example, iris_estimator):
    shuffled = _iris_frame(iris_example, note="x")[["note", *reversed(IRIS_FEATURES)]]
    spec = WrapSpec("pre-post", pre=PreProcessing(select_columns=tuple(IRIS_FEATURES)))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir, shuffled)
    assert list(preview.wrapped["prediction"]) == list(iris_estimator.predict(iris_example))
    selected = wrapper_models.apply_pre(shuffled, spec.pre.to_options())
    assert list(selected.columns) == IRIS_FEATURES


def test_pre_drop_removes_columns(paths, work_dir, iris_example, iris_estimator):
    spec = WrapSpec("pre-post", pre=PreProcessing(drop_columns=("row_id",)))
    with_id = _iris_frame(iris_example, row_id=range(len(iris_example)))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir, with_id)
    assert "row_id" in preview.example.columns
    assert list(saved_predictions(preview)["prediction"]) == list(
        iris_estimator.predict(iris_example)
    )
    assert "row_id" not in wrapper_models.apply_pre(with_id, spec.pre.to_options()).columns


def test_pre_fill_replaces_missing_values(paths, work_dir, iris_example, iris_estimator):
    holes = iris_example.copy()
    holes.loc[[0, 2], "petal_length"] = np.nan
    spec = WrapSpec("pre-post", pre=PreProcessing(fill_missing={"petal_length": 4.0}))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir, holes)
    filled = holes.fillna({"petal_length": 4.0})
    assert list(saved_predictions(preview, holes)["prediction"]) == list(
        iris_estimator.predict(filled)
    )


def test_pre_cast_converts_types(paths, work_dir, iris_example, iris_estimator):
    as_text = iris_example.astype({"sepal_width": str})
    spec = WrapSpec("pre-post", pre=PreProcessing(cast_types={"sepal_width": "float64"}))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir, as_text)
    inputs = {c["name"]: c["type"] for c in json.loads(preview.signature["inputs"])}
    assert inputs["sepal_width"] == "string" and inputs["sepal_length"] == "double"
    assert list(saved_predictions(preview)["prediction"]) == list(
        iris_estimator.predict(iris_example)
    )


def test_pre_steps_apply_in_order_rename_select_drop_fill_cast():
    frame = pd.DataFrame({"a": ["1", None], "b": [1.0, 2.0], "c": [3, 4]})
    pre = PreProcessing(
        rename_columns={"a": "x"},
        select_columns=("x", "b"),
        drop_columns=("b",),
        fill_missing={"x": "7"},
        cast_types={"x": "int64"},
    ).to_options()
    result = wrapper_models.apply_pre(frame, pre)
    assert list(result.columns) == ["x"]
    assert result["x"].tolist() == [1, 7] and result["x"].dtype == "int64"


# --- post-processing: each step on its own ---


def test_post_label_map(paths, work_dir, iris_estimator):
    spec = WrapSpec("pre-post", post=PostProcessing(label_map={"setosa": "Iris setosa"}))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir)
    expected = [
        "Iris setosa" if label == "setosa" else label
        for label in iris_estimator.predict(preview.example)
    ]
    assert "setosa" in list(preview.original["prediction"])
    assert list(saved_predictions(preview)["prediction"]) == expected


def test_post_threshold_on_a_binary_model(binary_model, work_dir):
    path, estimator = binary_model
    example = Model.load(str(path / "MLmodel")).load_input_example(str(path))
    positive_probability = estimator.predict_proba(example)[:, 1]
    # Just above the least confident positive prediction: that row must flip to negative.
    threshold = float(positive_probability[positive_probability >= 0.5].min()) + 1e-9
    labels = {"0": "malignant", "1": "benign"}
    spec = WrapSpec("pre-post", post=PostProcessing(threshold=threshold, label_map=labels))
    preview = build_wrapped_model(path, spec, work_dir)
    expected = ["benign" if p >= threshold else "malignant" for p in positive_probability]
    assert list(saved_predictions(preview)["prediction"]) == expected
    default_cut = [labels[str(label)] for label in estimator.predict(example)]
    assert sum(a != b for a, b in zip(expected, default_cut, strict=True)) == 1


def test_post_threshold_needs_a_binary_classifier(paths, work_dir):
    spec = WrapSpec("pre-post", post=PostProcessing(threshold=0.5))
    with pytest.raises(WrapError, match="binary classifier; this one has 3 classes"):
        build_wrapped_model(paths["iris-classifier"], spec, work_dir)
    with pytest.raises(WrapError, match="one column of labels; this one returns probability"):
        build_wrapped_model(paths["cancer-risk-scorer"], spec, work_dir)


def test_post_round_on_a_regressor(paths, work_dir):
    spec = WrapSpec("pre-post", post=PostProcessing(round_digits=1))
    preview = build_wrapped_model(paths["diabetes-regressor"], spec, work_dir)
    original = preview.original["prediction"].to_numpy()
    assert not np.array_equal(original, np.round(original, 1))
    assert_allclose(saved_predictions(preview)["prediction"], np.round(original, 1))


def test_post_confidence_is_the_highest_probability(paths, work_dir, iris_estimator):
    spec = WrapSpec("pre-post", post=PostProcessing(add_confidence=True))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir)
    wrapped = saved_predictions(preview)
    assert list(wrapped.columns) == ["prediction", "confidence"]
    assert_allclose(wrapped["confidence"], iris_estimator.predict_proba(preview.example).max(1))
    assert list(wrapped["prediction"]) == list(iris_estimator.predict(preview.example))


def test_params_schema_of_the_source_is_kept(paths, work_dir):
    spec = WrapSpec("pre-post", post=PostProcessing(round_digits=2))
    preview = build_wrapped_model(paths["cancer-risk-scorer"], spec, work_dir)
    params = json.loads(preview.signature["params"])
    assert params == [{"name": "threshold", "default": 0.5, "shape": None, "type": "double"}]
    model = mlflow.pyfunc.load_model(str(preview.saved_path))
    strict = model.predict(preview.example, params={"threshold": 0.0})
    assert set(strict["label"]) == {"malignant"}
    assert_allclose(strict["probability"], preview.original["probability"].round(2))


# --- pipelines stay sklearn-native ---


def test_pipeline_loads_with_the_sklearn_flavor_and_predicts_like_the_original(
    pipeline_preview, paths
):
    pipeline = mlflow.sklearn.load_model(str(pipeline_preview.saved_path))
    original = mlflow.sklearn.load_model(str(paths["diabetes-regressor"]))
    assert isinstance(pipeline, Pipeline)
    assert [name for name, _ in pipeline.steps] == ["impute-median", "clip-outliers", "model"]
    example = pipeline_preview.example
    assert_allclose(pipeline.predict(example), original.predict(example))
    assert_allclose(pipeline_preview.wrapped["prediction"], pipeline_preview.original["prediction"])
    flavor = Model.load(str(pipeline_preview.saved_path / "MLmodel")).flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"
    assert "numpy.clip" in flavor["skops_trusted_types"]
    # A missing value is now imputed with the example's median instead of failing.
    holes = example.copy()
    holes.loc[0, "bmi"] = np.nan
    assert_allclose(
        pipeline.predict(holes)[0],
        original.predict(example.assign(bmi=[example["bmi"].median(), *example["bmi"][1:]]))[0],
    )


def test_pipeline_around_a_classifier(paths, work_dir, iris_estimator):
    spec = WrapSpec("pipeline", pipeline_steps=("impute-most-frequent",))
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir)
    pipeline = mlflow.sklearn.load_model(str(preview.saved_path))
    assert list(pipeline.predict(preview.example)) == list(iris_estimator.predict(preview.example))
    assert_allclose(
        pipeline.predict_proba(preview.example), iris_estimator.predict_proba(preview.example)
    )


def test_pipeline_keeps_the_source_serialization_and_pins(azure_diabetes_model, work_dir):
    """The Azure example model: cloudpickle, no input example, an unpinned mlflow line."""
    request = json.loads((azure_diabetes_model.parent / "sample-request.json").read_text())
    example = pd.DataFrame(request["input_data"]["data"], columns=request["input_data"]["columns"])
    spec = WrapSpec("pipeline", pipeline_steps=("impute-mean",))
    preview = build_wrapped_model(azure_diabetes_model, spec, work_dir, example)
    flavor = Model.load(str(preview.saved_path / "MLmodel")).flavors["sklearn"]
    assert flavor["serialization_format"] == "cloudpickle"
    pipeline = mlflow.sklearn.load_model(str(preview.saved_path))
    original = mlflow.sklearn.load_model(str(azure_diabetes_model))
    assert_allclose(pipeline.predict(example), original.predict(example))
    requirements = (preview.saved_path / "requirements.txt").read_text().split()
    assert "mlflow" not in requirements
    assert f"mlflow=={importlib.metadata.version('mlflow')}" in requirements
    assert {"cloudpickle==3.1.1", "scikit-learn==1.6.1"} <= set(requirements)
    assert all("==" in line for line in requirements)


def test_pipeline_needs_an_sklearn_model(paths, work_dir):
    spec = WrapSpec("pipeline", pipeline_steps=("impute-zero",))
    with pytest.raises(WrapError, match="not an sklearn-flavor model"):
        build_wrapped_model(paths["cancer-risk-scorer"], spec, work_dir)


# --- custom code ---


def test_custom_template_passes_unchanged(paths, work_dir, iris_estimator):
    spec = WrapSpec("custom", custom_code=custom_code_template())
    preview = build_wrapped_model(paths["iris-classifier"], spec, work_dir)
    expected = list(iris_estimator.predict(preview.example))
    assert list(preview.wrapped["prediction"]) == expected
    assert list(saved_predictions(preview)["prediction"]) == expected
    assert (preview.saved_path / "custom_wrapper.py").read_text() == custom_code_template()


def test_custom_code_without_set_model_gets_one(paths, work_dir):
    code = custom_code_template().replace("mlflow.models.set_model(WrappedModel())\n", "")
    preview = build_wrapped_model(
        paths["iris-classifier"], WrapSpec("custom", custom_code=code), work_dir
    )
    saved = (preview.saved_path / "custom_wrapper.py").read_text()
    assert saved.rstrip().endswith("mlflow.models.set_model(WrappedModel())")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("return pd.DataFrame", "return pd.DataFrame("), r"Syntax error at line 1[67], column"),
        (("import pandas as pd", "import pandas_not_here as pd"), "'pandas_not_here'"),
        (("def predict(", "def forecast("), "WrappedModel has no predict method"),
        (
            ("def predict(self, context, model_input, params=None)", "def predict(self, data)"),
            r"predict takes \(data\)",
        ),
        (
            ("predictions = self.model", "raise ValueError('no way')\n        x = self.model"),
            r"WrappedModel.predict raised ValueError: no way at line 14",
        ),
        (("import pandas as pd", "import deploystudio"), "not installed where the model is served"),
    ],
    ids=["syntax", "import", "no-predict", "predict-signature", "predict-raises", "deploystudio"],
)
def test_custom_code_problems_say_what_to_fix(paths, work_dir, change, message):
    old, new = change
    code = custom_code_template()
    assert old in code
    spec = WrapSpec("custom", custom_code=code.replace(old, new, 1))
    with pytest.raises(WrapError, match=message):
        build_wrapped_model(paths["iris-classifier"], spec, work_dir)


# --- the spec ---


def test_spec_options_round_trip_pickle_and_hash():
    spec = WrapSpec(
        "pre-post",
        pre=PreProcessing(rename_columns={"a": "b"}, cast_types={"b": "float64"}),
        post=PostProcessing(label_map={1: "yes"}, threshold=0.7),
    )
    assert spec.options() == {
        "pre": {"cast_types": {"b": "float64"}, "rename_columns": {"a": "b"}},
        "post": {"label_map": {"1": "yes"}, "threshold": 0.7},
    }
    assert spec_from_options("pre-post", json.loads(json.dumps(spec.options()))) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(spec_from_options("pre-post", spec.options()))
    assert WrapSpec("pipeline", pipeline_steps=["impute-mean"]).options() == {
        "pipeline_steps": ["impute-mean"]
    }
    assert set(PIPELINE_STEPS) >= {"impute-median", "clip-outliers"}


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("pre-post", {"pre": {"cast_types": {"a": "decimal"}}}, "Cannot cast to"),
        ("pre-post", {"post": {"threshold": 1.5}}, "between 0 and 1"),
        ("pipeline", {"pipeline_steps": ["scale-everything"]}, "Unknown pipeline steps"),
        ("pre-post", {"pre": {"renames": {}}}, 'Unknown "pre" options'),
        ("pre-post", {}, "at least one pre- or post-processing step"),
        ("lasso", {}, "Unknown wrapper kind"),
    ],
)
def test_spec_problems_are_wrap_errors(kind, options, message):
    with pytest.raises(WrapError, match=message):
        spec_from_options(kind, options)


def test_widgets_may_build_an_empty_spec_which_the_build_refuses(paths, work_dir):
    spec = WrapSpec(WrapperKind.PRE_POST)  # what the page holds before a step is chosen
    with pytest.raises(WrapError, match="at least one"):
        build_wrapped_model(paths["iris-classifier"], spec, work_dir)


# --- registering: all or nothing ---


def _model_names(registry: Registry) -> set[str]:
    return {m.name for m in registry.client.search_registered_models(max_results=1000)}


def test_register_a_new_model_then_a_new_version(settings, registry, proba_preview):
    messages: list[str] = []
    spec = WrapSpec(WrapperKind.PROBABILITIES)
    first = register_wrapped_model(
        settings,
        registry,
        proba_preview,
        "models:/iris-classifier/1",
        spec,
        "test-wrap-iris-proba",
        progress=messages.append,
    )
    assert (first.name, first.version, first.model_uri) == (
        "test-wrap-iris-proba",
        "1",
        "models:/test-wrap-iris-proba/1",
    )
    assert any("Uploading" in m for m in messages) and messages[-1].startswith("Registered")
    version = registry.get_version("test-wrap-iris-proba", "1")
    assert version.tags[WRAPPED_FROM_TAG] == "models:/iris-classifier/1"
    assert version.tags[WRAPPER_KIND_TAG] == "proba"
    assert json.loads(version.tags[WRAPPER_OPTIONS_TAG]) == {}
    run = registry.client.get_run(first.run_id)
    experiment = registry.client.get_experiment(run.info.experiment_id)
    assert experiment.name == "deploystudio-demo"  # the source version's experiment
    # The registered version is a complete model: download it and predict with it.
    path = local_model_path(first.model_uri, settings, registry)
    model = mlflow.pyfunc.load_model(str(path))
    assert_allclose(model.predict(proba_preview.example).to_numpy(), proba_preview.wrapped)

    second = register_wrapped_model(
        settings, registry, proba_preview, "models:/iris-classifier/1", spec, first.name
    )
    assert second.version == "2"


def test_a_name_the_registry_refuses_leaves_nothing(settings, registry, proba_preview):
    models_before = _model_names(registry)
    spec = WrapSpec(WrapperKind.PROBABILITIES)
    with pytest.raises(WrapError, match=r"nothing was registered.*cannot contain"):
        register_wrapped_model(
            settings, registry, proba_preview, "models:/iris-classifier/1", spec, "test-wrap/bad"
        )
    assert _model_names(registry) == models_before
    runs = registry.client.search_runs(
        [registry.client.get_experiment_by_name("deploystudio-demo").experiment_id],
        filter_string="attributes.run_name = 'wrap-proba-test-wrap/bad'",
        run_view_type=mlflow.entities.ViewType.ALL,
    )
    assert [r.info.lifecycle_stage for r in runs] == ["deleted"]
    assert not Path(runs[0].info.artifact_uri.removeprefix("file://"), "model").exists()


def test_an_artifact_store_that_cannot_be_written_leaves_nothing(tmp_path, proba_preview, paths):
    # A registry of its own, whose customize experiment stores artifacts below a plain file.
    settings = settings_for(tmp_path / "studio")
    settings.home.mkdir(parents=True)
    registry = Registry(settings.tracking_uri, settings.registry_uri)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    registry.client.create_experiment(CUSTOMIZE_EXPERIMENT, (blocker / "artifacts").as_uri())
    with pytest.raises(WrapError, match="nothing was registered"):
        register_wrapped_model(
            settings,
            registry,
            proba_preview,
            str(paths["iris-classifier"]),
            WrapSpec(WrapperKind.PROBABILITIES),
            "test-wrap-unwritable",
        )
    assert _model_names(registry) == set()
    runs = registry.client.search_runs(
        [registry.client.get_experiment_by_name(CUSTOMIZE_EXPERIMENT).experiment_id],
        run_view_type=mlflow.entities.ViewType.ALL,
    )
    assert [r.info.lifecycle_stage for r in runs] == ["deleted"]


def test_a_missing_saved_model_is_refused_before_anything_is_created(
    settings, registry, paths, work_dir
):
    preview = build_wrapped_model(paths["iris-classifier"], WrapSpec("proba"), work_dir)
    shutil.rmtree(preview.saved_path)
    models_before = _model_names(registry)
    with pytest.raises(WrapError, match="build it again"):
        register_wrapped_model(
            settings, registry, preview, "models:/iris-classifier/1", WrapSpec("proba"), "x-y"
        )
    assert _model_names(registry) == models_before
