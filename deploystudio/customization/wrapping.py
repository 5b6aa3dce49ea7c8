"""Log-time wrappers: build a new model around a model version, then register it as a version.

Two steps, in two processes:
- `build_wrapped_model` loads the source model and runs model code (its pickles, the user's
  custom code), so pages call it in the prediction worker. It works on a local model folder,
  never on the registry, and saves the wrapped model under a work folder.
- `register_wrapped_model` (wrap_registration.py) runs in the app: it logs the saved folder as
  artifacts and registers it, and never loads model code.

Wrapped models are MLflow "models from code" (a readable wrapper.py with its options, plus the
source model as the artifact "source_model"), or, for pipelines, native sklearn models; either
loads without Deploy Studio installed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.pyfunc import PyFuncModel, PythonModelContext
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deploystudio.customization import wrapper_models
from deploystudio.customization.custom_code import (
    CODE_FILE_NAME,
    check_custom_code,
    custom_code_template,
    run_check,
)
from deploystudio.customization.wrap_pipeline import build_pipeline, trusted_types
from deploystudio.customization.wrap_spec import (
    CAST_TYPES,
    PIPELINE_STEPS,
    PostProcessing,
    PreProcessing,
    WrapperKind,
    WrapSpec,
    spec_from_options,
)
from deploystudio.errors import InvalidModelError, WrapError
from deploystudio.prediction import predictions_frame

__all__ = [
    "CAST_TYPES",
    "KIND_DESCRIPTIONS",
    "PIPELINE_STEPS",
    "PostProcessing",
    "PreProcessing",
    "WrapPreview",
    "WrapSpec",
    "WrapperKind",
    "available_kinds",
    "build_wrapped_model",
    "custom_code_template",
    "spec_from_options",
    "work_folder",
]

GENERATED_CODE_FILE = "wrapper.py"
SOURCE_ARTIFACT = wrapper_models.SOURCE_ARTIFACT
_OPTIONS_LINE = 'OPTIONS: dict = json.loads("{}")\n'

KIND_DESCRIPTIONS: dict[WrapperKind, str] = {
    WrapperKind.PROBABILITIES: "Return predict_proba, one column per class (named by class "
    "label), instead of classes. Whether the model has predict_proba is checked when the "
    "wrapper is built, since finding out means loading the model.",
    WrapperKind.PRE_POST: "Rename, select, drop, fill or cast input columns before the model; "
    "map labels, apply a threshold, round or add a confidence column after it.",
    WrapperKind.PIPELINE: "Put scikit-learn repair steps (imputers, clipping) in front of the "
    "estimator; the result stays a native sklearn model.",
    WrapperKind.CUSTOM_CODE: "Your own PythonModel around the original model, checked on the "
    "input example before it is saved.",
}


@dataclass(frozen=True)
class WrapPreview:
    """A wrapped model saved (not yet logged), and both models' predictions on one input."""

    example: pd.DataFrame | np.ndarray  # the wrapped model's input (callers' column names)
    original: pd.DataFrame  # the source's predictions (an `error` column if it failed)
    wrapped: pd.DataFrame  # the saved copy's predictions, loaded back with pyfunc.load_model
    saved_path: Path  # folder holding the saved model (MLmodel inside)
    signature: dict  # the new signature's to_dict()
    seconds: float


def work_folder(home: Path) -> Path:
    """Where wrapped models are saved before they are registered (inside the studio's data)."""
    return home / "customize"


def _read_mlmodel(model_path: Path) -> Model:
    try:
        return Model.load(str(Path(model_path) / "MLmodel"))
    except (OSError, MlflowException) as exc:
        raise InvalidModelError(f"'{model_path}' has no readable MLmodel file: {exc}") from exc


def available_kinds(model_path: Path) -> dict[WrapperKind, str | None]:
    """Each kind -> None when it applies to this model, else why it does not.

    Reads the MLmodel file only (never unpickles the model). Whether the model has
    predict_proba (PROBABILITIES, and threshold or confidence in PRE_POST) needs the loaded
    object, so it is checked by build_wrapped_model.
    """
    flavors = _read_mlmodel(model_path).flavors
    names = ", ".join(sorted(flavors)) or "none"
    if "python_function" not in flavors:
        reason = f"the model has no python_function flavor (flavors: {names}), so it cannot be run"
        return dict.fromkeys(WrapperKind, reason)
    kinds: dict[WrapperKind, str | None] = dict.fromkeys(WrapperKind)
    if "sklearn" not in flavors:
        kinds[WrapperKind.PIPELINE] = (
            f"not an sklearn-flavor model (flavors: {names}); pipelines wrap scikit-learn "
            "estimators"
        )
    return kinds


@contextlib.contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as exc:
        raise WrapError(f"{what} failed: {exc.message}") from exc
    except (ImportError, OSError) as exc:
        raise WrapError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def build_wrapped_model(
    source_path: Path, spec: WrapSpec, work_dir: Path, example: Any = None
) -> WrapPreview:
    """Build the wrapper, save it under a new folder in `work_dir`, load the saved copy back and
    predict `example` (default: the source's input example) with both models.

    Runs model code: call it in the prediction worker. Raises WrapError with a message a user
    can act on; on failure the new folder is removed.
    """
    started = time.perf_counter()
    spec.validate()
    source_path = Path(source_path).resolve()
    source_meta = _read_mlmodel(source_path)
    reason = available_kinds(source_path)[spec.kind]
    if reason:
        raise WrapError(f"A {spec.kind.value} wrapper does not fit this model: {reason}.")
    example, params = _example(source_meta, source_path, spec, example)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=work_dir, prefix=f"wrap-{spec.kind.value}-"))
    saved_path = folder / "model"
    try:
        with _mlflow_errors("Loading the original model"):
            source = mlflow.pyfunc.load_model(str(source_path))
        original = _original_predictions(source, spec, example, params)
        if spec.kind is WrapperKind.PRE_POST and spec.post.threshold is not None:
            _check_single_label_column(original)
        if spec.kind is WrapperKind.PIPELINE:
            _save_pipeline(source_path, source_meta, spec, example, saved_path)
        else:
            _save_from_code(source, source_path, source_meta, spec, example, params, folder)
        with _mlflow_errors("Loading the saved wrapper back"):
            wrapped_model = mlflow.pyfunc.load_model(str(saved_path))
        raw = run_check(wrapped_model, lambda: wrapped_model.predict(example, params), "predict")
        wrapped = predictions_frame(raw)
        signature = _read_mlmodel(saved_path).signature
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return WrapPreview(
        example=example,
        original=original,
        wrapped=wrapped,
        saved_path=saved_path,
        signature=signature.to_dict() if signature else {},
        seconds=time.perf_counter() - started,
    )


def _uses_pre(spec: WrapSpec) -> bool:
    return spec.kind in (WrapperKind.PROBABILITIES, WrapperKind.PRE_POST)


def _example(
    source_meta: Model, source_path: Path, spec: WrapSpec, example: Any
) -> tuple[Any, dict | None]:
    """The wrapper's input example and params. The source's example is in the model's own
    column names; renamed columns arrive under their incoming names, so rename it back."""
    params = None
    with contextlib.suppress(FileNotFoundError, MlflowException):
        params = source_meta.load_input_example_params(str(source_path))
    if example is None:
        try:
            example = source_meta.load_input_example(str(source_path))
        except (FileNotFoundError, MlflowException) as exc:
            raise WrapError(f"The model's input example cannot be read: {exc}") from exc
        if example is None:
            raise WrapError(
                "The model has no input example, which the wrapper needs to infer its signature "
                "and check itself: pass an example, or re-log the model with input_example."
            )
        if _uses_pre(spec) and spec.pre.rename_columns and isinstance(example, pd.DataFrame):
            incoming = {new: old for old, new in spec.pre.rename_columns.items()}
            example = example.rename(columns=incoming)
    elif not isinstance(example, pd.DataFrame | np.ndarray):
        try:
            example = pd.DataFrame(example)
        except (ValueError, TypeError) as exc:
            raise WrapError(f"The example cannot be read as a table: {exc}") from exc
    if isinstance(example, pd.DataFrame):
        example = example.reset_index(drop=True)
    return example, params


def _original_predictions(
    source: PyFuncModel, spec: WrapSpec, example: Any, params: dict | None
) -> pd.DataFrame:
    """The source model on the same input; a failure is shown, not raised (the wrapper may
    exist precisely to accept input the source refuses)."""
    try:
        data = example
        if _uses_pre(spec):
            data = wrapper_models.apply_pre(example, spec.pre.to_options())
        return predictions_frame(source.predict(data, params=params))
    except Exception as exc:  # model code can raise anything
        message = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        return pd.DataFrame({"error": [message] * len(example)})


def _check_single_label_column(original: pd.DataFrame) -> None:
    # The threshold replaces the label column; with several output columns (a label and a
    # probability, say) the others would no longer agree with it.
    if original.shape[1] != 1:
        raise WrapError(
            "A threshold needs a model whose output is one column of labels; this one returns "
            f"{', '.join(map(str, original.columns))}. Use a custom-code wrapper instead."
        )


def _code_options(spec: WrapSpec) -> dict[str, Any]:
    options: dict[str, Any] = {"kind": spec.kind.value, "pre": spec.pre.to_options()}
    if spec.kind is WrapperKind.PRE_POST:
        options["post"] = spec.post.to_options()
    return options


def generated_code(options: dict[str, Any]) -> str:
    """wrapper_models.py with the options written in, ending with MLflow's set_model call."""
    text = Path(wrapper_models.__file__).read_text()
    if text.count(_OPTIONS_LINE) != 1:
        raise RuntimeError("wrapper_models.py must define OPTIONS on exactly one line")
    body = json.dumps(options, indent=4, sort_keys=True)
    # A raw triple-quoted string holds any JSON text: JSON escapes every quote inside strings,
    # so three quotes in a row never occur, and the text never ends with a backslash.
    literal = f'OPTIONS: dict = json.loads(\n    r"""\n{body}\n"""\n)\n'
    return (
        text.replace(_OPTIONS_LINE, literal)
        + "\n\nmlflow.models.set_model(WrappedModel(OPTIONS))\n"
    )


def _estimator_with_probabilities(source: PyFuncModel, spec: WrapSpec) -> Any:
    try:
        estimator = wrapper_models.framework_object(source)
    except MlflowException:
        estimator = None
    if not (hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")):
        what = type(estimator).__name__ if estimator is not None else "its flavor's object"
        raise WrapError(
            f"The model has no predict_proba ({what} has none), so it cannot give class "
            "probabilities: use a classifier, or a custom-code wrapper."
        )
    if spec.post.threshold is not None and len(estimator.classes_) != 2:
        raise WrapError(
            f"A threshold needs a binary classifier; this one has {len(estimator.classes_)} "
            "classes. Use a label map instead."
        )
    return estimator


def _save_from_code(
    source: PyFuncModel,
    source_path: Path,
    source_meta: Model,
    spec: WrapSpec,
    example: Any,
    params: dict | None,
    folder: Path,
) -> None:
    packages = ["mlflow", "numpy", "pandas"]
    if spec.kind is WrapperKind.CUSTOM_CODE:
        custom = check_custom_code(spec.custom_code, folder)
        model, code_path = custom.model, folder / CODE_FILE_NAME
        packages += custom.requirements
    else:
        options = _code_options(spec)
        if wrapper_models.needs_probabilities(options):
            _estimator_with_probabilities(source, spec)
        if options["pre"] and not isinstance(example, pd.DataFrame):
            raise WrapError("Pre-processing steps need a model whose input has named columns.")
        model = wrapper_models.WrappedModel(options)
        code_path = folder / GENERATED_CODE_FILE
        code_path.write_text(generated_code(options))
    # Run the model in this process first: a failure is then reported with the user's line
    # numbers, and its output gives the signature to save the model with.
    context = PythonModelContext(artifacts={SOURCE_ARTIFACT: str(source_path)}, model_config=None)
    run_check(model, lambda: model.load_context(context), "load_context")
    output = run_check(model, lambda: model.predict(context, example, params), "predict")
    _check_output(output, example, spec)
    signature = _signature(example, output, params, source_meta)
    # MLflow stores an artifact under its folder's name and records where it came from: a copy
    # named source_model gives a readable layout and keeps the cache path out of the MLmodel.
    # (MLflow refuses a symbolic link; hard links make the copy cheap where they work.)
    staged = folder / SOURCE_ARTIFACT
    shutil.copytree(source_path, staged, copy_function=_link_or_copy)
    try:
        with _mlflow_errors("Saving the wrapped model"):
            mlflow.pyfunc.save_model(
                path=str(folder / "model"),
                python_model=str(code_path),
                artifacts={SOURCE_ARTIFACT: str(staged)},
                signature=signature,
                input_example=(example, params) if params else example,
                pip_requirements=pinned_requirements(source_path, packages),
            )
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _check_output(output: Any, example: Any, spec: WrapSpec) -> None:
    try:
        frame = predictions_frame(output)
    except Exception as exc:  # whatever predict returned
        raise WrapError(f"predict returned {type(output).__name__}, not a table: {exc}") from exc
    if len(frame) != len(example):
        raise WrapError(
            f"predict returned {len(frame)} rows for {len(example)} input rows: return one row "
            "per input row."
        )


def _signature(example: Any, output: Any, params: dict | None, source_meta: Model):
    """Inputs and outputs inferred from the example and the new output; the source's params."""
    try:
        inferred = infer_signature(example, output, params=params)
    except MlflowException as exc:
        raise WrapError(f"MLflow cannot infer a signature from the output: {exc.message}") from exc
    source_params = source_meta.signature.params if source_meta.signature else None
    return ModelSignature(
        inputs=inferred.inputs, outputs=inferred.outputs, params=source_params or inferred.params
    )


def _save_pipeline(
    source_path: Path, source_meta: Model, spec: WrapSpec, example: Any, saved_path: Path
) -> None:
    flavor = source_meta.flavors["sklearn"]
    serialization = flavor.get("serialization_format", mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE)
    with _mlflow_errors("Loading the scikit-learn estimator"):
        estimator = mlflow.sklearn.load_model(str(source_path))
    pipeline = build_pipeline(estimator, spec.pipeline_steps, example)
    try:
        output = pipeline.predict(example)
    except Exception as exc:  # the estimator's own code
        raise WrapError(f"The pipeline cannot predict the example: {exc}") from exc
    packages = ["mlflow", "scikit-learn", "numpy", "pandas"]
    if serialization == mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS:
        packages.append("skops")
    elif serialization == mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE:
        packages.append("cloudpickle")
    with _mlflow_errors("Saving the pipeline"):
        mlflow.sklearn.save_model(
            pipeline,
            str(saved_path),
            serialization_format=serialization,
            skops_trusted_types=(
                trusted_types(pipeline, flavor.get("skops_trusted_types"))
                if serialization == mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS
                else None
            ),
            signature=_signature(example, output, None, source_meta),
            input_example=example,
            pip_requirements=pinned_requirements(source_path, packages),
        )


def pinned_requirements(source_path: Path, packages: list[str]) -> list[str]:
    """The source model's requirements, plus exact pins of what the wrapper needs.

    A package the wrapper needs keeps the source's exact pin when it has one; an unpinned
    source line for it is replaced by the installed version's pin (the wrapper was checked
    with that version). `-r`/`-c` lines are dropped: they name files MLflow would look for in
    the current directory, not in the source model.
    """
    needed: dict[str, str] = {}
    for package in packages:
        requirement = Requirement(package)
        name = canonicalize_name(requirement.name)
        needed[name] = package if requirement.specifier else _installed_pin(requirement.name)
    lines: list[str] = []
    path = source_path / "requirements.txt"
    text = path.read_text() if path.is_file() else ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith(("-r", "-c", "--requirement")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            lines.append(line)  # pip options such as --extra-index-url
            continue
        name = canonicalize_name(requirement.name)
        exact = any(s.operator in ("==", "===") for s in requirement.specifier)
        if name in needed and not exact:
            continue
        needed.pop(name, None)
        lines.append(line)
    return lines + list(needed.values())


def _installed_pin(distribution: str) -> str:
    return f"{distribution}=={importlib.metadata.version(distribution)}"
