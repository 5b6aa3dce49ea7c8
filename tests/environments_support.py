"""Shared pieces of the model-environment tests: one uv cache per test session (real uv, real
package index), and small model folders written on the spot."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from pathlib import Path

import pytest


def use_session_uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point uv at one cache folder for the whole session (every module that downloads shares
    it), so each wheel is fetched once per run."""
    cache = tmp_path_factory.getbasetemp() / "uv-cache"
    cache.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UV_CACHE_DIR", str(cache))
        yield cache


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
