"""Choosing the environment a model runs in: auto, model, app (issue 19, part 3), with real uv
builds into a test data folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploystudio.environment import installed_version
from deploystudio.environments import PlanInputs
from deploystudio.environments.choice import (
    EnvMode,
    EnvModeError,
    choose,
    parse_mode,
    unmet_requirements,
)
from deploystudio.errors import RequirementsRefusedError
from tests.environments_support import use_session_uv_cache, write_model

# A cloudpickled sklearn model: the loader imports mlflow, scikit-learn and cloudpickle.
PICKLED_SKLEARN = "  sklearn:\n    serialization_format: cloudpickle\n    sklearn_version: 1.1.3\n"


@pytest.fixture(scope="module", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory):
    yield from use_session_uv_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("choice-home")


def app_pins() -> str:
    return "".join(
        f"{name}=={installed_version(name)}\n" for name in ("mlflow", "scikit-learn", "cloudpickle")
    )


def test_parse_mode():
    assert parse_mode(None) is EnvMode.AUTO
    assert parse_mode(" Model ") is EnvMode.MODEL
    with pytest.raises(EnvModeError, match="auto, model, app"):
        parse_mode("conda")


def test_app_mode_never_reads_or_builds(home, tmp_path):
    chosen = choose("app", tmp_path / "not-a-model", home)
    assert chosen.environment is None and chosen.python == Path(sys.executable)
    assert "--env app" in chosen.reason


def test_auto_keeps_the_app_environment_when_the_loader_pins_are_satisfied(home, tmp_path):
    # requests is not imported by the loader: its pin does not matter here.
    folder = write_model(
        tmp_path / "same", app_pins() + "requests==2.0.0\n", flavors=PICKLED_SKLEARN
    )
    assert unmet_requirements(PlanInputs.from_folder(folder)) == []
    chosen = choose(EnvMode.AUTO, folder, home)
    assert chosen.environment is None and chosen.python == Path(sys.executable)
    assert "already has every version" in chosen.reason and "scikit-learn" in chosen.reason
    assert not (home / "environments").exists()  # nothing planned, nothing built


def test_unmet_names_the_asked_and_the_installed_versions(tmp_path):
    folder = write_model(
        tmp_path / "old",
        "mlflow>=2,<3\nscikit-learn==1.1.3\nnot-a-real-package-xyz==1.0\n",
        flavors=PICKLED_SKLEARN,
    )
    unmet = unmet_requirements(PlanInputs.from_folder(folder))
    described = [item.describe() for item in unmet]
    assert described == [
        f"mlflow>=2,<3 ({installed_version('mlflow')} here)",
        f"scikit-learn==1.1.3 ({installed_version('scikit-learn')} here)",
    ]


def test_auto_with_refused_lines_says_to_use_the_app_environment(home, tmp_path):
    folder = write_model(
        tmp_path / "refused", "--extra-index-url https://example.invalid/simple\nmlflow\n"
    )
    with pytest.raises(RequirementsRefusedError, match="--env app"):
        choose("auto", folder, home)


def test_auto_builds_the_model_environment_when_a_loader_pin_differs(home, tmp_path):
    # Only cloudpickle is pinned (a small wheel), at a version other than the app's.
    assert installed_version("cloudpickle") != "2.2.1"
    folder = write_model(tmp_path / "pickled", "cloudpickle==2.2.1\n", flavors=PICKLED_SKLEARN)
    said: list[str] = []
    chosen = choose("auto", folder, home, progress=said.append)
    assert chosen.environment is not None and chosen.environment.built_now
    assert chosen.python == chosen.environment.python
    assert "cloudpickle==2.2.1" in chosen.reason and "built now" in chosen.reason
    assert any("Installing" in line for line in said)
    version = subprocess.run(
        [str(chosen.python), "-c", "import cloudpickle; print(cloudpickle.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert version == "2.2.1"
    # `model` finds the same environment, built before; `app` ignores it.
    again = choose("model", folder, home)
    assert again.environment is not None and again.environment.key == chosen.environment.key
    assert "built before" in again.reason and "--env model" in again.reason
    assert choose("app", folder, home).environment is None


def test_skew_advice_names_the_package_whose_versions_differ(tmp_path):
    from deploystudio.environments.diagnosis import skew_advice

    here = installed_version("scikit-learn")
    pins = "scikit-learn==1.1.3\nnumpy==1.26.4\n"
    old = PlanInputs.from_folder(write_model(tmp_path / "old", pins, flavors=PICKLED_SKLEARN))
    advice = skew_advice("ModuleNotFoundError: No module named 'sklearn.ensemble._gb_losses'", old)
    assert advice is not None
    assert f"scikit-learn 1.1.3 when saved, {here} here" in advice and "numpy" not in advice
    assert "--env model" in advice
    # A native error names no package: every one that differs is listed.
    native = skew_advice("ValueError: numpy.dtype size changed, may indicate binary incompat", old)
    assert native is not None and "numpy 1.26.4 when saved" in native
    # A package the app does not have at all is named alone, as not installed here.
    gone = PlanInputs.from_folder(
        write_model(tmp_path / "gone", pins + "xgboost==1.4.2\n", flavors=PICKLED_SKLEARN)
    )
    missing = skew_advice("ModuleNotFoundError: No module named 'xgboost'", gone)
    assert missing is not None and "scikit-learn" not in missing
    xgboost_here = installed_version("xgboost") or "not installed"
    assert f"xgboost 1.4.2 when saved, {xgboost_here} here" in missing
    # Not a skew error, or no skew: nothing added.
    assert skew_advice("KeyError: 'petal_width'", old) is None
    same = PlanInputs.from_folder(write_model(tmp_path / "same", app_pins()))
    assert skew_advice("No module named 'sklearn.ensemble._gb_losses'", same) is None


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="which wheels exist depends on it")
def test_a_scikit_learn_0_24_model_is_told_what_cannot_be_installed_here(
    tmp_path, monkeypatch, capsys
):
    """A model of the scikit-learn 0.24 era (no 0.24.x wheel for Python 3.11): `env plan`,
    `predict --env model` and `deploy --env model` each say what cannot be installed on this
    interpreter and why, with no traceback; nothing is built and no server is started."""
    from deploystudio.cli.main import main

    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(tmp_path / "home"))
    flavors = "  sklearn:\n    serialization_format: cloudpickle\n    sklearn_version: 0.24.2\n"
    folder = str(write_model(tmp_path / "old", "mlflow==1.30.0\nscikit-learn==0.24.2\n"
                             "cloudpickle==1.6.0\n", flavors=flavors, python_version="3.8.10"))
    body = tmp_path / "rows.json"
    body.write_text('{"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}')
    why = "scikit-learn==0.24.2 cannot be installed on this interpreter: scikit-learn 0.24.2 has "
    why += "no wheel for CPython 3.11"

    assert main(["env", "plan", folder]) == 1  # blocked
    out, err = capsys.readouterr()
    assert f"blocked: {why}" in out and "nor does any later 0.24.x" in out
    assert "Python 3.8" in out and "cannot be downloaded" in out
    try:
        assert main(["predict", folder, "--input", str(body), "--env", "model"]) != 0
        out, err = capsys.readouterr()
        assert why in err and "--env app" in err
        assert main(["deploy", "ancient", "--deployment", "blue", "--model", folder,
                     "--env", "model"]) != 0
        out, err = capsys.readouterr()
        assert why in err and "did not start" in err
        for text in (out, err):
            assert "Traceback" not in text and '  File "' not in text
        assert not list((tmp_path / "home").glob("environments/*/venv"))  # nothing built
    finally:
        main(["endpoint", "stop-all"])
