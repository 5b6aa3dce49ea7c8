"""Shared pieces of the model-environment tests: one uv cache per test run (real uv, real
package index), the old stack several modules run models in, and small model folders written on
the spot.

Under pytest-xdist each worker has its own basetemp (`<run>/popen-gwN`): what the workers share
(the uv cache, the old stack's environment and models) lives one level up, in the run's folder,
so a wheel is downloaded and an environment built once per run, not once per worker."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# An old stack (issue 19, part 4): MLflow 2, scikit-learn 1.1, pandas 1.5, NumPy 1.
OLD_STACK = (
    "mlflow==2.17.2\nscikit-learn==1.1.3\npandas==1.5.3\nnumpy==1.26.4\ncloudpickle==2.2.1\n"
)
SKLEARN_FLAVOR = "  sklearn:\n    serialization_format: cloudpickle\n    sklearn_version: 1.1.3\n"

# Run with the old environment's Python: train, log with MLflow 2, and keep what it predicts.
TRAIN = """
import json, sys
import numpy as np, pandas as pd, mlflow, sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.ensemble import GradientBoostingClassifier
from mlflow.models import infer_signature
rng = np.random.default_rng(0)
X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
y = (X["a"] + X["b"] > 0).astype("int64")
model = LogisticRegression().fit(X, y)
mlflow.sklearn.save_model(
    model, sys.argv[1], signature=infer_signature(X, y), serialization_format="cloudpickle",
    pip_requirements=sys.argv[2].split())
# Gradient boosting of scikit-learn 1.1 pickles sklearn.ensemble._gb_losses, gone since 1.4:
# the app's scikit-learn cannot unpickle it (real version skew).
boosted = GradientBoostingClassifier(n_estimators=5).fit(X, y)
mlflow.sklearn.save_model(
    boosted, sys.argv[1] + "-boosted", serialization_format="cloudpickle",
    pip_requirements=sys.argv[2].split())
print(json.dumps({"X": X.head(5).values.tolist(), "y": model.predict(X.head(5)).tolist(),
                  "versions": [mlflow.__version__, sklearn.__version__, pd.__version__]}))
"""


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the whole test run, shared by its xdist workers (their basetemps are its
    `popen-gwN` subfolders); the basetemp itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def uv_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = run_folder(tmp_path_factory) / "uv-cache"
    cache.mkdir(exist_ok=True)
    return cache


def use_session_uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point uv at one cache folder for the whole run (every module that downloads shares it,
    in every xdist worker: uv locks its cache for concurrent use), so each wheel is fetched
    once per run."""
    cache = uv_cache_folder(tmp_path_factory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UV_CACHE_DIR", str(cache))
        yield cache


def once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict]
) -> dict:
    """`make(folder)`'s facts (plain JSON), made once per run in `<run>/<name>/`: the first
    worker to ask makes them while holding a lock; the others wait on it, then read them. A
    `make` that failed left no facts: the next one to ask tries again (and fails alike)."""
    folder = run_folder(tmp_path_factory) / name
    folder.mkdir(exist_ok=True)
    facts = folder / "facts.json"
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if not facts.is_file():
                made = make(folder)
                temporary = facts.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps(made), encoding="utf-8")
                os.replace(temporary, facts)
            return json.loads(facts.read_text(encoding="utf-8"))
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def uv_cache_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run's uv cache for the duration of a block (a session fixture's build runs before
    any module's own `uv_cache` fixture)."""
    yield from use_session_uv_cache(tmp_path_factory)


def write_model(
    folder: Path,
    requirements: str | None,
    *,
    flavors: str = "",
    python_env: str | None = None,
    python_version: str | None = None,
) -> Path:
    """A model folder with an MLmodel (a pyfunc flavor, plus `flavors` YAML) and the given
    environment files; no weights (planning and building never load the model)."""
    folder.mkdir(parents=True, exist_ok=True)
    python_version = python_version or platform.python_version()
    (folder / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.pyfunc.model\n"
        f"    python_version: {python_version}\n" + flavors,
        encoding="utf-8",
    )
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements, encoding="utf-8")
    if python_env is not None:
        (folder / "python_env.yaml").write_text(python_env, encoding="utf-8")
    return folder
