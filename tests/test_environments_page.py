"""The Inspect page's Environment tab: the plan, asked for with a button, then kept."""

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from components import services
from tests.conftest import REPO_ROOT
from tests.environments_support import use_session_uv_cache, write_model

APP = str(REPO_ROOT / "app.py")


@pytest.fixture(scope="module", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory):
    yield from use_session_uv_cache(tmp_path_factory)


@pytest.fixture(autouse=True)
def fresh_caches():
    services.get_registry.clear()
    services.refresh_registry_listings()
    yield
    services.get_registry.clear()
    services.refresh_registry_listings()


def inspect(uri: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("views/inspect.py")
    at.query_params["uri"] = uri
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_environment_tab_plans_the_azure_model(
    seeded, monkeypatch, tmp_path, azure_diabetes_model
):
    shutil.copytree(azure_diabetes_model, tmp_path / "model")
    monkeypatch.setenv("DEPLOYSTUDIO_MODEL_ROOTS", str(tmp_path))
    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(tmp_path / "home"))
    at = inspect(str(tmp_path / "model"))
    assert not any("chosen" in d.value.columns for d in at.dataframe)  # not planned yet
    at.button(key="environment_plan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    plan = next(d.value for d in at.dataframe if "chosen" in d.value.columns)
    sklearn = plan.set_index("package").loc["scikit-learn"]
    assert (sklearn["asked"], sklearn["chosen"]) == ("==1.6.1", "1.6.1")
    assert sklearn["MLmodel says"] == "sklearn_version 1.1.2"
    warnings = " ".join(w.value for w in at.warning)
    assert "Python asked: 3.12.3" in warnings and "cannot be downloaded" in warnings
    # The plan is kept: the next visit shows it without asking the index again.
    services.refresh_registry_listings()
    again = inspect(str(tmp_path / "model"))
    assert not again.button or all(b.key != "environment_plan" for b in again.button)
    assert any("chosen" in d.value.columns for d in again.dataframe)


def test_environment_tab_refuses_bad_requirements_at_once(seeded, monkeypatch, tmp_path):
    write_model(tmp_path / "bad", "six==1.16.0\n-i https://mirror.example/simple\n")
    monkeypatch.setenv("DEPLOYSTUDIO_MODEL_ROOTS", str(tmp_path))
    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(tmp_path / "home"))
    at = inspect(str(tmp_path / "bad"))
    assert any("index option" in e.value for e in at.error)
    assert all(b.key != "environment_plan" for b in at.button)
