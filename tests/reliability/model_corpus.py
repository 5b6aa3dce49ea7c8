"""Broken MLflow model folders and scoring scripts, made from good ones by damaging a copy.

Each `Damage` changes one part of a good model folder (saved once with MLflow) and names the
words a useful message about it must contain: the file or field that is broken. Each behaviour
in `PYFUNC_BEHAVIOURS` is the code file of a models-from-code pyfunc, dropped into a copy of a
good one. `SCRIPTS` are scoring scripts with one mistake each.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from deploystudio.environment import installed_version

SENTINEL_TEXT = "outside-sentinel-3f9c1e: this file must never be read by the studio"
CODE_FILE = "model_code.py"
COLUMNS = ["a", "b"]


def good_frame(rows: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(rows, dtype="float64"), "b": np.ones(rows)})


def _requirements(*distributions: str) -> list[str]:
    # Pinned by hand: MLflow's own inference of requirements takes seconds per model.
    return [f"{d}=={installed_version(d)}" for d in distributions]


def save_sklearn_model(folder: Path) -> Path:
    """A tiny classifier with a signature and an input example: the good model to damage."""
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(frame, [0, 0, 1, 1])
    mlflow.sklearn.save_model(
        model,
        str(folder),
        signature=infer_signature(frame, model.predict(frame)),
        input_example=frame.head(2),
        pip_requirements=_requirements("scikit-learn", "mlflow"),
    )
    return folder


GOOD_CODE = """
import mlflow
import pandas as pd


class Model(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        pass

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"y": [1.0] * len(model_input)})


mlflow.models.set_model(Model())
"""


def save_pyfunc_model(folder: Path, scratch: Path) -> Path:
    """A models-from-code pyfunc: its behaviour is the file CODE_FILE inside the folder."""
    scratch.mkdir(parents=True, exist_ok=True)
    code = scratch / CODE_FILE
    code.write_text(GOOD_CODE)
    mlflow.pyfunc.save_model(
        str(folder), python_model=str(code), pip_requirements=_requirements("mlflow")
    )
    return folder


def with_code(good: Path, target: Path, code: str) -> Path:
    shutil.copytree(good, target)
    (target / CODE_FILE).write_text(code)
    return target


# ----------------------------------------------------------------------------- model folders


@dataclass(frozen=True)
class Damage:
    """One way to break a model folder. `apply(folder, outside)` damages the copy in `folder`;
    `outside` is a folder beside it whose sentinel.txt must never be read. A message about the
    result must contain one of `names` (the broken file or field)."""

    name: str
    apply: Callable[[Path, Path], None]
    names: tuple[str, ...]


def _mlmodel(folder: Path) -> dict:
    return yaml.safe_load((folder / "MLmodel").read_text())


def _write_mlmodel(folder: Path, data: object) -> None:
    (folder / "MLmodel").write_text(yaml.safe_dump(data))


def _edit(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        data = _mlmodel(folder)
        change(data)
        _write_mlmodel(folder, data)

    return apply


def _set_text(relative: str, text: str | bytes) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        path = folder / relative
        path.unlink(missing_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return apply


def _example_path(path_of: Callable[[Path], str]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        data = _mlmodel(folder)
        data["saved_input_example_info"]["artifact_path"] = path_of(outside)
        _write_mlmodel(folder, data)

    return apply


def _example_info(info: object) -> Callable[[Path, Path], None]:
    return _edit(lambda data: data.__setitem__("saved_input_example_info", info))


def _link(relative: str, target: Callable[[Path], Path]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        path = folder / relative
        if path.exists() or path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target(outside))

    return apply


def _link_to_sibling(relative: str) -> Callable[[Path, Path], None]:
    """A link to a file beside the model folder: MLflow's folder download allows what lies
    under the folder's parent, so only our own check keeps it out of the cache."""

    def apply(folder: Path, outside: Path) -> None:
        sibling = folder.parent / f"{folder.name}-sibling.txt"
        sibling.write_text(SENTINEL_TEXT)
        _link(relative, lambda o: sibling)(folder, outside)

    return apply


def _pyfunc(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    return _edit(lambda data: change(data["flavors"]["python_function"]))


def _signature(inputs: str) -> Callable[[Path, Path], None]:
    return _edit(lambda data: data["signature"].__setitem__("inputs", inputs))


def _big_mlmodel(folder: Path, outside: Path) -> None:
    # Appended as text: dumping 5 MB through PyYAML takes seconds.
    with (folder / "MLmodel").open("a") as handle:
        handle.write("metadata:\n  padding: " + "x" * (5 * 1024 * 1024) + "\n")


def _python_version_number(folder: Path, outside: Path) -> None:
    # Without python_env.yaml, the flavor's python_version is the one the report reads.
    (folder / "python_env.yaml").unlink()
    _pyfunc(lambda f: f.__setitem__("python_version", 3.1))(folder, outside)


_BAD_TYPE = json.dumps([{"type": "quaternion", "name": "a", "required": True}])
_NOT_A_SPEC = json.dumps([{"name": "a"}])
_BINARY = bytes(range(256)) * 8
_LATIN1 = "flavors:\n  python_function:\n    loader_module: caf\xe9\n".encode("latin-1")

DAMAGES: list[Damage] = [
    Damage("MLmodel not YAML", _set_text("MLmodel", "flavors: [unclosed\n  : : {\n"), ("MLmodel",)),
    Damage(
        "MLmodel a YAML list", _set_text("MLmodel", "- flavors\n- python_function\n"), ("MLmodel",)
    ),
    Damage("MLmodel empty", _set_text("MLmodel", ""), ("MLmodel",)),
    Damage("MLmodel binary", _set_text("MLmodel", _BINARY), ("MLmodel",)),
    Damage("MLmodel not UTF-8", _set_text("MLmodel", _LATIN1), ("MLmodel",)),
    Damage("MLmodel of 5 MB", _big_mlmodel, ("MLmodel",)),
    Damage("MLmodel a symlink outside", _link("MLmodel", lambda o: o / "MLmodel"), ("MLmodel",)),
    Damage("missing flavors", _edit(lambda d: d.pop("flavors")), ("flavors",)),
    Damage("flavors a string", _edit(lambda d: d.__setitem__("flavors", "sklearn")), ("flavors",)),
    Damage(
        "flavor settings a list",
        _edit(lambda d: d["flavors"].__setitem__("python_function", [1, 2])),
        ("python_function",),
    ),
    Damage(
        "no python_function flavor",
        _edit(lambda d: d["flavors"].pop("python_function")),
        ("python_function",),
    ),
    Damage(
        "loader_module missing",
        _pyfunc(lambda f: f.__setitem__("loader_module", "no_such_loader_module_x")),
        ("no_such_loader_module_x",),
    ),
    Damage(
        "loader_module a missing mlflow submodule",
        _pyfunc(lambda f: f.__setitem__("loader_module", "mlflow.no_such_flavor_x")),
        ("mlflow.no_such_flavor_x",),
    ),
    Damage(
        "python_version a number",
        _python_version_number,
        ("Python",),
    ),
    Damage(
        "mlflow_version a number", _edit(lambda d: d.__setitem__("mlflow_version", 1)), ("MLflow",)
    ),
    Damage("signature not JSON", _signature("{not json"), ("signature",)),
    Damage("signature unknown type", _signature(_BAD_TYPE), ("signature",)),
    Damage("signature spec without type", _signature(_NOT_A_SPEC), ("signature",)),
    Damage("signature a string", _edit(lambda d: d.__setitem__("signature", "x")), ("signature",)),
    Damage(
        "input example missing",
        lambda f, o: (f / "input_example.json").unlink(),
        ("input example",),
    ),
    Damage(
        "input example ../../outside",
        _example_path(lambda o: "../../outside/sentinel.txt"),
        ("input example",),
    ),
    Damage(
        "input example ../sibling",
        _example_path(lambda o: f"../{o.name}/sentinel.txt"),
        ("input example",),
    ),
    Damage(
        "input example absolute",
        _example_path(lambda o: str(o / "sentinel.txt")),
        ("input example",),
    ),
    Damage(
        "input example file://",
        _example_path(lambda o: f"file://{o / 'sentinel.txt'}"),
        ("input example",),
    ),
    Damage(
        "input example %2e%2e",
        _example_path(lambda o: "%2e%2e/%2e%2e/outside/sentinel.txt"),
        ("input example",),
    ),
    Damage(
        "input example a symlink outside",
        _link("input_example.json", lambda o: o / "sentinel.txt"),
        ("input example",),
    ),
    Damage("input example folder a symlink outside", _link("ex", lambda o: o), ()),
    Damage(
        "input example not JSON", _set_text("input_example.json", "{not json"), ("input example",)
    ),
    Damage("input example binary", _set_text("input_example.json", _BINARY), ("input example",)),
    Damage(
        "input example JSON of the wrong shape",
        _set_text("input_example.json", "[1, 2]"),
        ("input example",),
    ),
    Damage(
        "input example info without type",
        _example_info({"artifact_path": "input_example.json"}),
        ("input example",),
    ),
    Damage(
        "input example info unknown type",
        _example_info({"artifact_path": "input_example.json", "type": "bogus"}),
        ("input example",),
    ),
    Damage("input example info a string", _example_info("input_example.json"), ("input example",)),
    Damage("input example info a list", _example_info(["input_example.json"]), ("input example",)),
    Damage(
        "requirements.txt garbage",
        _set_text("requirements.txt", "%%% not a requirement ((\n=1\n"),
        ("requirements.txt",),
    ),
    Damage(
        "requirements.txt binary", _set_text("requirements.txt", _BINARY), ("requirements.txt",)
    ),
    Damage(
        "requirements.txt a symlink outside",
        _link("requirements.txt", lambda o: o / "sentinel.txt"),
        ("requirements.txt",),
    ),
    Damage(
        "conda.yaml garbage", _set_text("conda.yaml", "dependencies: [unclosed\n"), ("conda.yaml",)
    ),
    Damage("conda.yaml binary", _set_text("conda.yaml", _BINARY), ("conda.yaml",)),
    Damage(
        "python_env.yaml garbage",
        _set_text("python_env.yaml", "python: {: :\n"),
        ("python_env.yaml",),
    ),
    Damage(
        "python_env.yaml a list", _set_text("python_env.yaml", "- python\n"), ("python_env.yaml",)
    ),
    Damage("artifact symlink outside", _link("data/leak", lambda o: o), ()),
    Damage("artifact symlink to /etc", _link("etc-link", lambda o: Path("/etc")), ()),
    Damage(
        "requirements.txt a symlink beside the folder",
        _link_to_sibling("requirements.txt"),
        ("requirements.txt",),
    ),
    Damage("artifact symlink beside the folder", _link_to_sibling("data/beside"), ()),
]
# Damages that name no field (a symlink that nothing reads) must only never read the outside
# file and never crash.


def _truncate(fraction: float) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        path = folder / "MLmodel"
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return apply


def truncations(count: int) -> list[Damage]:
    """MLmodel cut at `count` evenly spaced points: some cuts still parse, so they name nothing
    and must only not crash."""
    return [
        Damage(f"MLmodel cut at {i}-{count}", _truncate(i / count), ()) for i in range(1, count)
    ]


# ----------------------------------------------------------------------------- pyfunc code

_HEAD = """
import mlflow
import pandas as pd


class Model(mlflow.pyfunc.PythonModel):
"""
_TAIL = """

mlflow.models.set_model(Model())
"""


def _model_code(load_context: str = "pass", predict: str = "return model_input") -> str:
    body = f"""    def load_context(self, context):
        {load_context}

    def predict(self, context, model_input, params=None):
        {predict}
"""
    return _HEAD + body + _TAIL


@dataclass(frozen=True)
class Behaviour:
    """A pyfunc whose code does one bad thing; a message about it must contain all `names`."""

    name: str
    code: str
    names: tuple[str, ...]
    # Whether the call never returns on its own (it then gets a short timeout).
    hangs: bool = False


PYFUNC_BEHAVIOURS: list[Behaviour] = [
    Behaviour(
        "load_context raises",
        _model_code(load_context="raise RuntimeError('load_context-boom')"),
        ("load_context-boom", "while loading"),
    ),
    Behaviour(
        "module import raises",
        "raise ValueError('import-boom')\n" + _model_code(),
        ("import-boom",),
    ),
    Behaviour(
        "module imports a missing package",
        "import no_such_package_zz9\n" + _model_code(),
        ("no_such_package_zz9",),
    ),
    Behaviour(
        "no set_model",
        _model_code().replace("mlflow.models.set_model(Model())", ""),
        ("set_model",),
    ),
    Behaviour(
        "predict raises",
        _model_code(predict="raise KeyError('predict-boom')"),
        ("predict-boom",),
    ),
    Behaviour(
        "predict raises SystemExit",
        _model_code(predict="raise SystemExit('exit-boom')"),
        ("crashed",),
    ),
    Behaviour(
        "predict returns an object",
        _model_code(predict="return object()"),
        ("object",),
    ),
    Behaviour(
        "predict returns a generator",
        _model_code(predict="return (i for i in range(3))"),
        ("generator",),
    ),
    Behaviour(
        "predict returns a lambda",
        _model_code(predict="return lambda: 1"),
        ("function",),
    ),
    Behaviour(
        "predict returns a table of objects",
        _model_code(predict="return pd.DataFrame({'y': [object()] * len(model_input)})"),
        ("object",),
    ),
    Behaviour(
        "predict hangs",
        _model_code(predict="import time; time.sleep(3600)"),
        ("did not answer",),
        hangs=True,
    ),
    Behaviour(
        "predict allocates without bound",
        _model_code(predict="hoard = [bytearray(50_000_000) for _ in iter(int, 1)]"),
        ("memory",),
    ),
    Behaviour(
        "predict exits the process",
        _model_code(predict="import os; os._exit(3)"),
        ("crashed",),
    ),
    Behaviour(
        "predict kills itself",
        _model_code(predict="import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"),
        ("SIGSEGV",),
    ),
]


# ----------------------------------------------------------------------------- scoring scripts

_LOAD = """
import json
import os

import mlflow
import pandas as pd

model = None


def init():
    global model
    model = mlflow.pyfunc.load_model(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model"))
"""


@dataclass(frozen=True)
class Script:
    """A scoring script with one mistake; `names` as for `Damage`, `stage` where it must stop."""

    name: str
    source: str
    stage: str
    names: tuple[str, ...]


_RUN_OK = """

def run(raw_data):
    data = json.loads(raw_data)["input_data"]
    frame = pd.DataFrame(data["data"], columns=data["columns"])
    return model.predict(frame).tolist()
"""

_NO_COLON = _LOAD + "\n\ndef run(raw_data)\n    return 1\n"
_DEDENT = _LOAD + "\n\ndef run(raw_data):\nreturn 1\n"
_NUL = _LOAD + "\n# NUL \x00\n" + _RUN_OK


def _line(source: str, text: str) -> int:
    """The 1-based number of the first line of `source` that starts with `text`."""
    return next(n for n, line in enumerate(source.splitlines(), 1) if line.startswith(text))


SCRIPTS: list[Script] = [
    Script("syntax error", _NO_COLON, "syntax", (f"line {_line(_NO_COLON, 'def run')}",)),
    Script("bad indentation", _DEDENT, "syntax", (f"line {_line(_DEDENT, 'return 1')}",)),
    Script("NUL byte", _NUL, "syntax", (f"line {_line(_NUL, '# NUL')}, column 7",)),
    Script("no run()", _LOAD, "start", ("run()",)),
    Script("no init()", _LOAD.replace("def init", "def setup") + _RUN_OK, "start", ("init()",)),
    Script(
        "init raises",
        _LOAD.replace("global model", "raise RuntimeError('init-boom')") + _RUN_OK,
        "start",
        ("init-boom",),
    ),
    Script(
        "run raises",
        _LOAD + "\n\ndef run(raw_data):\n    raise ValueError('run-boom')\n",
        "score",
        ("run-boom",),
    ),
    Script(
        "run returns something not JSON",
        _LOAD + "\n\ndef run(raw_data):\n    return object()\n",
        "score",
        ("JSON", "serializ", "object"),
    ),
    Script(
        "imports a missing package",
        "import no_such_package_zz8\n" + _LOAD + _RUN_OK,
        "start",
        ("no_such_package_zz8",),
    ),
    Script(
        "import raises", "raise SystemExit(4)\n" + _LOAD + _RUN_OK, "start", ("exit", "import", "4")
    ),
]


def sentinel_folder(base: Path) -> Path:
    outside = base / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "sentinel.txt").write_text(SENTINEL_TEXT)
    # A valid MLmodel with the sentinel inside: following a link to it must not be possible.
    (outside / "MLmodel").write_text(
        yaml.safe_dump({"flavors": {"python_function": {"loader_module": SENTINEL_TEXT}}})
    )
    return outside


def files_containing(root: Path, text: str) -> list[Path]:
    """Regular files under `root` (symlinks not followed) whose bytes contain `text`."""
    needle = text.encode()
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            if needle in path.read_bytes():
                found.append(path)
    return found
