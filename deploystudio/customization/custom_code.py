"""Custom wrapper code typed by a user: the template, and the checks it must pass before it is
saved as an MLflow "model from code".

Runs in the prediction worker: checking imports means executing the code.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel
from packaging.utils import canonicalize_name

from deploystudio.errors import WrapError

CODE_FILE_NAME = "custom_wrapper.py"
_SET_MODEL_CALL = "mlflow.models.set_model({name}())"
_PREDICT_PARAMETERS = ["context", "model_input", "params"]

_TEMPLATE = '''\
"""Custom inference around a registered model: edit predict() to change the output."""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class WrappedModel(PythonModel):
    def load_context(self, context):
        # The original model is saved inside this one, as the artifact "source_model".
        self.model = mlflow.pyfunc.load_model(context.artifacts["source_model"])

    def predict(self, context, model_input, params=None):
        predictions = self.model.predict(model_input, params=params)
        # Change the output here, e.g. add a column or map labels.
        return pd.DataFrame({"prediction": list(predictions)})


mlflow.models.set_model(WrappedModel())
'''


def custom_code_template() -> str:
    """A ready-to-edit PythonModel wrapping the original model; it passes validation as is."""
    return _TEMPLATE


@dataclass(frozen=True)
class CustomCode:
    """Code that passed the static and import checks, ready to be saved with the model."""

    text: str  # the user's code, with a set_model(...) call appended when it had none
    model: PythonModel  # the object set_model received, not yet given its context
    requirements: tuple[str, ...]  # exact pins of the installed packages the code imports


def check_custom_code(code: str, work_dir: Path) -> CustomCode:
    """Parse, import and inspect the code; WrapError says what to fix (with line and column)."""
    try:
        tree = ast.parse(code, filename=CODE_FILE_NAME)
    except SyntaxError as exc:
        where = f"line {exc.lineno}, column {exc.offset}" if exc.lineno else "the code"
        raise WrapError(f"Syntax error at {where}: {exc.msg}. Fix it and validate again.") from exc
    imported = _imported_modules(tree)
    if "deploystudio" in imported:
        raise WrapError(
            "The code imports deploystudio, which is not installed where the model is served: "
            "use mlflow, pandas, numpy or your own packages instead."
        )
    namespace = _execute(code, work_dir)
    model = mlflow.models.model.__mlflow_model__
    text = code
    if model is None:
        name, model = _the_model_class(namespace)
        text = code.rstrip() + "\n\n\n" + _SET_MODEL_CALL.format(name=name) + "\n"
    if not isinstance(model, PythonModel):
        raise WrapError(
            "mlflow.models.set_model(...) must receive an instance of a PythonModel subclass "
            f"(it received {type(model).__name__})."
        )
    _check_predict(model)
    (work_dir / CODE_FILE_NAME).write_text(text)
    return CustomCode(text=text, model=model, requirements=_pins(imported))


def _imported_modules(tree: ast.Module) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def _the_model_class(namespace: dict) -> tuple[str, PythonModel]:
    """Without a set_model call, the one PythonModel subclass the code defines, instantiated."""
    module = namespace["__name__"]
    classes = [
        value
        for value in namespace.values()
        if isinstance(value, type) and issubclass(value, PythonModel) and value.__module__ == module
    ]
    if len(classes) != 1:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise WrapError(
            f"Define one class that subclasses mlflow.pyfunc.PythonModel (found {found}), or "
            "end the code with mlflow.models.set_model(YourModel())."
        )
    cls = classes[0]
    try:
        return cls.__name__, cls()
    except Exception as exc:  # user code can raise anything
        raise WrapError(
            f"{cls.__name__}() raised {_describe(exc)}: give its __init__ defaults, or end the "
            "code with mlflow.models.set_model(YourModel(...))."
        ) from exc


def _execute(code: str, work_dir: Path) -> dict:
    """Run the code as MLflow does when it loads a model from code; its module namespace."""
    path = work_dir / CODE_FILE_NAME
    path.write_text(code)
    module_name = f"deploystudio_custom_wrapper_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # MLflow keeps the object set_model received in this module variable and reads it back when
    # loading a model from code; clear it so a previous wrapper's model cannot be picked up.
    mlflow.models.model.__mlflow_model__ = None
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise WrapError(
            f"The code imports '{missing}', which cannot be imported here ({exc}). "
            "Install it in the studio's environment, or remove the import."
        ) from exc
    except Exception as exc:  # user code can raise anything while it is imported
        raise WrapError(f"The code raised {_describe(exc)} while being imported.") from exc
    finally:
        sys.modules.pop(module_name, None)
    return vars(module)


def _check_predict(model: PythonModel) -> None:
    method = type(model).predict
    expected = "predict(self, context, model_input, params=None)"
    if method is PythonModel.predict:
        raise WrapError(f"{type(model).__name__} has no predict method: define {expected}.")
    parameters = list(inspect.signature(method).parameters.values())[1:]
    names = [p.name for p in parameters]
    if names != _PREDICT_PARAMETERS or parameters[2].default is not None:
        raise WrapError(
            f"{type(model).__name__}.predict takes ({', '.join(names)}); MLflow calls it as "
            f"{expected}."
        )


def run_check(model: PythonModel, call, what: str):
    """Run one of the model's methods; an exception becomes a WrapError naming its line."""
    try:
        return call()
    except Exception as exc:  # user code can raise anything
        raise WrapError(f"{type(model).__name__}.{what} raised {_describe(exc)}.") from exc


def _describe(exc: BaseException) -> str:
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(CODE_FILE_NAME):
            where = f" at line {frame.lineno}"
            break
    return f"{type(exc).__name__}: {exc}{where}"


def _pins(modules: set[str]) -> tuple[str, ...]:
    """Exact pins of the installed distributions that provide the imported modules."""
    distributions = importlib.metadata.packages_distributions()
    pins = set()
    for module in modules:
        if module in sys.stdlib_module_names:
            continue
        candidates = distributions.get(module, [])
        # mlflow is provided by mlflow and mlflow-skinny: pin the one named like the module.
        named = [d for d in candidates if canonicalize_name(d) == canonicalize_name(module)]
        for distribution in named or candidates:
            pins.add(f"{distribution}=={importlib.metadata.version(distribution)}")
    return tuple(sorted(pins))
