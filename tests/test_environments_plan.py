"""Environment plans with the real uv against the real package index; refused requirement lines."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import pytest

from deploystudio.cli.main import main
from deploystudio.environments import Choice, PlanInputs, compute_plan, plan_environment
from deploystudio.environments.sources import check_lines, requirement_lines
from deploystudio.environments.uv import index_settings, redact_urls, uv_environment
from deploystudio.errors import PackageIndexUnreachableError, RequirementsRefusedError
from tests.conftest import AZURE_DIABETES_MODEL
from tests.environments_support import use_session_uv_cache, write_model

ON_311 = sys.version_info[:2] == (3, 11)


@pytest.fixture(scope="module", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory):
    yield from use_session_uv_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def azure_plan():
    return compute_plan(PlanInputs.from_folder(AZURE_DIABETES_MODEL))


def by_name(plan, name):
    return next(r for r in plan.requirements if r.name == name)


def test_azure_fixture_plan_shows_both_sklearn_versions(azure_plan):
    sklearn = by_name(azure_plan, "scikit-learn")
    assert (sklearn.asked, sklearn.chosen, sklearn.choice) == ("==1.6.1", "1.6.1", Choice.EXACT)
    assert sklearn.saved_with == "sklearn_version 1.1.2"
    assert sklearn.loader_imports
    assert any("1.1.2" in n and "1.6.1" in n for n in azure_plan.notes)
    mlflow = by_name(azure_plan, "mlflow")
    assert mlflow.choice is Choice.RESOLVED and mlflow.chosen
    assert azure_plan.source == "python_env.yaml + requirements.txt"
    assert any("azureml-inference-server-http" in n for n in azure_plan.notes)
    assert "scikit-learn==1.6.1" in azure_plan.locked and azure_plan.key
    # scikit-learn 1.6.1 came after NumPy 2: numpy is not held back.
    assert not any("NumPy 2" in n for n in azure_plan.notes)
    numpy = next(p for p in azure_plan.locked if p.startswith("numpy=="))
    assert int(numpy.removeprefix("numpy==").split(".")[0]) >= 2


def test_azure_fixture_plan_is_honest_about_python(azure_plan):
    python = azure_plan.python
    assert (python.asked, python.asked_in) == ("3.12.3", "python_env.yaml")
    assert Path(python.path).is_file()
    if python.match == "different":  # no 3.12 installed: the case on these machines
        assert python.used == platform.python_version()
        assert "cannot be downloaded" in python.note and "3.12.3" in python.note
    else:
        assert python.used.startswith("3.12.")


@pytest.mark.skipif(not ON_311, reason="which releases have wheels depends on the Python")
def test_pin_without_wheel_gets_nearest_release_or_is_relaxed(tmp_path):
    flavors = "  sklearn:\n    sklearn_version: 1.1.2\n    serialization_format: cloudpickle\n"
    folder = write_model(
        tmp_path / "old", "scikit-learn==1.1.2\nnumpy==1.21.6\nsix==1.16.0\n", flavors=flavors
    )
    plan = compute_plan(PlanInputs.from_folder(folder))
    sklearn = by_name(plan, "scikit-learn")
    assert (sklearn.choice, sklearn.chosen) == (Choice.NEAREST, "1.1.3")
    assert "1.1.2 has no wheel for CPython 3.11" in sklearn.reason
    numpy = by_name(plan, "numpy")  # the loader does not import numpy itself: information
    assert numpy.choice is Choice.RELAXED and not numpy.loader_imports
    assert numpy.chosen == "1.23.2"  # the first numpy with cp311 wheels, not the newest
    assert by_name(plan, "six").choice is Choice.EXACT
    assert {"scikit-learn==1.1.3", "numpy==1.23.2", "six==1.16.0"} <= set(plan.locked)
    assert plan.key and not plan.blockers


@pytest.mark.skipif(not ON_311, reason="which releases have wheels depends on the Python")
def test_loader_pin_not_installable_here_blocks_with_the_reason(tmp_path):
    flavors = "  sklearn:\n    sklearn_version: 0.20.0\n"
    folder = write_model(tmp_path / "ancient", "scikit-learn==0.20.0\n", flavors=flavors)
    plan = compute_plan(PlanInputs.from_folder(folder))
    sklearn = by_name(plan, "scikit-learn")
    assert sklearn.choice is Choice.NOT_INSTALLABLE and sklearn.chosen is None
    assert "no wheel for CPython 3.11" in sklearn.reason and "0.20.x" in sklearn.reason
    assert plan.key is None and "loader imports it" in plan.blockers[0]


def test_unknown_release_is_not_installable(tmp_path):
    folder = write_model(tmp_path / "typo", "six==99.0.0\n")
    plan = compute_plan(PlanInputs.from_folder(folder))
    assert by_name(plan, "six").choice is Choice.RELAXED
    assert "six 99.0.0 is not on the package index" in by_name(plan, "six").reason


def test_plan_is_cached_and_reused(tmp_path):
    folder = write_model(tmp_path / "tiny", "six==1.16.0\n")
    root = tmp_path / "environments"
    first = plan_environment(PlanInputs.from_folder(folder), root)
    assert len(list((root / "plans").glob("*.json"))) == 1
    again = plan_environment(PlanInputs.from_folder(folder), root)
    assert again == first


REFUSED = [
    ("-i https://mirror.example/simple", "index option"),
    ("--index-url https://mirror.example/simple", "index option"),
    ("--extra-index-url=https://mirror.example/simple", "index option"),
    ("-f /tmp/wheels", "index option"),
    ("--find-links https://mirror.example/wheels", "index option"),
    ("--trusted-host mirror.example", "index option"),
    ("-r other-requirements.txt", "include"),
    ("--requirement=other.txt", "include"),
    ("-c constraints.txt", "include"),
    ("-e .", "editable install"),
    ("git+https://github.com/example/pkg.git@main#egg=pkg", "VCS requirement"),
    ("pkg @ git+https://github.com/example/pkg.git", "VCS requirement"),
    ("pkg @ https://files.example/pkg-1.0.tar.gz", "URL requirement"),
    ("https://files.example/pkg-1.0-py3-none-any.whl", "URL requirement"),
    ("./vendor/pkg", "local path"),
    ("/opt/wheels/pkg-1.0-py3-none-any.whl", "local path"),
    ("pkg-1.0-py3-none-any.whl", "local path"),
]


@pytest.mark.parametrize(("line", "kind"), REFUSED)
def test_refused_requirement_lines(line, kind):
    with pytest.raises(RequirementsRefusedError) as caught:
        check_lines([("requirements.txt", "six==1.16.0"), ("requirements.txt", line)])
    message = str(caught.value)
    assert kind in message and line[:40] in message and "nothing is installed" in message
    assert "--env app" in message


def test_plain_requirements_pass_the_check():
    lines = ["six==1.16.0", "numpy>=1.20,<3 ; python_version >= '3.9'", "pandas[parquet]",
             "requests==2.31.0 --hash=sha256:abc", "# a comment", ""]
    asked = check_lines([("requirements.txt", line) for line in lines])
    assert [a.name for a in asked] == ["six", "numpy", "pandas", "requests"]


def test_refused_model_installs_nothing_and_the_cli_says_why(tmp_path, monkeypatch, capsys):
    folder = write_model(
        tmp_path / "bad", "six==1.16.0\n--extra-index-url https://evil.example/simple\n"
        "pkg @ git+https://github.com/example/pkg.git\n"
    )
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    assert main(["env", "build", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "2 line(s) that are refused" in error and "Traceback" not in error
    assert not (home / "environments").exists()


def test_python_env_may_include_only_its_own_requirements_file(tmp_path):
    env_yaml = f"python: {platform.python_version()}\ndependencies:\n- -r requirements.txt\n"
    env_yaml += "- six==1.16.0\n"
    folder = write_model(tmp_path / "ok", "packaging==23.2\n", python_env=env_yaml)
    inputs = PlanInputs.from_folder(folder)
    source, lines = requirement_lines(inputs)
    assert source == "python_env.yaml + requirements.txt"
    assert [line for _, line in lines] == ["packaging==23.2", "six==1.16.0"]
    bad = write_model(tmp_path / "bad", "six\n", python_env="dependencies:\n- -r ../../etc/x\n")
    with pytest.raises(RequirementsRefusedError, match="include"):
        compute_plan(PlanInputs.from_folder(bad))


def test_unreachable_index_says_so_without_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://user:s3cret-pw@127.0.0.1:9/simple")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-cache"))  # nothing cached to reuse
    folder = write_model(tmp_path / "m", "six==1.16.0\n")
    with pytest.raises(PackageIndexUnreachableError) as caught:
        compute_plan(PlanInputs.from_folder(folder))
    message = str(caught.value)
    assert "could not be reached" in message and "--env app" in message
    assert "s3cret-pw" not in message and "***@127.0.0.1:9" in message


def test_pip_index_settings_are_translated_for_uv():
    settings = index_settings(
        {
            "PIP_INDEX_URL": "https://me:pw@mirror.example/simple",
            "PIP_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
            "PIP_FIND_LINKS": "/srv/wheels",
            "PIP_CERT": "/etc/ssl/company.pem",
        }
    )
    assert settings.origin == "pip settings"
    assert "pw" not in settings.describe() and "***@mirror.example" in settings.describe()
    env = uv_environment(settings)
    assert env["UV_DEFAULT_INDEX"] == "https://me:pw@mirror.example/simple"
    assert env["UV_INDEX"] == "https://a.example/simple https://b.example/simple"
    assert env["UV_FIND_LINKS"] == "/srv/wheels" and env["UV_PYTHON_DOWNLOADS"] == "never"
    assert redact_urls("see https://me:pw@host/x and git+ssh://git@h/y") == (
        "see https://***@host/x and git+ssh://***@h/y"
    )


def test_cli_plan_json(tmp_path, monkeypatch, capsys):
    folder = write_model(tmp_path / "tiny", "six==1.16.0\n")
    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(tmp_path / "home"))
    assert main(["env", "plan", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requirements"][0]["chosen"] == "1.16.0" and data["ready"] is False
    assert data["locked"] == ["six==1.16.0"] and data["key"]
    assert main(["env", "plan", str(AZURE_DIABETES_MODEL)]) == 0
    out = capsys.readouterr().out
    assert "asked 3.12.3 (python_env.yaml)" in out and "sklearn_version 1.1.2" in out


def test_flavor_versions_are_read_generically():
    flavors = {
        "python_function": {"loader_module": "mlflow.xgboost", "python_version": "3.10.4"},
        "xgboost": {"xgb_version": "1.7.6", "code": None},
        "pytorch": {"pytorch_version": "2.1.0", "serialization_format": "cloudpickle"},
        "lightgbm": {"lgb_version": "4.1.0"},
    }
    inputs = PlanInputs.from_texts("m", {"requirements.txt": "xgboost==1.7.6\n"}, flavors)
    assert inputs.saved_with == {
        "xgboost": ("xgb_version", "1.7.6"),
        "torch": ("pytorch_version", "2.1.0"),
        "lightgbm": ("lgb_version", "4.1.0"),
    }
    assert set(inputs.loader_distributions) == {
        "mlflow", "xgboost", "torch", "lightgbm", "cloudpickle"
    }
    assert inputs.flavor_python == "3.10.4"


def test_conda_pip_section_is_used_without_python_env():
    conda = "dependencies:\n- python=3.11.7\n- pip:\n  - six==1.16.0\n  - packaging\n"
    inputs = PlanInputs.from_texts("m", {"conda.yaml": conda, "requirements.txt": "x==1\n"}, {})
    source, lines = requirement_lines(inputs)
    assert source == "conda.yaml"
    assert [line for _, line in lines] == ["six==1.16.0", "packaging"]


def test_pip_conf_is_read_through_pip(tmp_path, monkeypatch):
    from deploystudio.environments.uv import pip_config

    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://me:pw@mirror.example/simple\n")
    for name in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    pip_config.cache_clear()
    try:
        settings = index_settings()
        env = uv_environment(settings)
    finally:
        pip_config.cache_clear()
    assert settings.origin == "pip settings"
    assert settings.index_url == "https://me:pw@mirror.example/simple"
    assert env["UV_DEFAULT_INDEX"] == settings.index_url
    assert "pw" not in settings.describe()


@pytest.mark.skipif(not ON_311, reason="which releases have wheels depends on the Python")
def test_frameworks_of_before_setuptools_82_get_pkg_resources(tmp_path):
    """XGBoost 1.4 imports pkg_resources as it loads; a uv virtualenv has no setuptools (the
    only provider, which removed it in 82). A model pinning only xgboost==1.4.2 gets
    setuptools<82 in its plan, with the reason; one that asks for setuptools keeps its own."""
    flavors = "  xgboost:\n    xgb_version: 1.4.2\n"
    folder = write_model(tmp_path / "xgb", "xgboost==1.4.2\n", flavors=flavors)
    plan = compute_plan(PlanInputs.from_folder(folder))
    setuptools = next(p for p in plan.locked if p.startswith("setuptools=="))
    assert int(setuptools.removeprefix("setuptools==").split(".")[0]) < 82
    assert any("xgboost 1.4.2 was released before setuptools 82 removed pkg_resources" in n
               and "setuptools<82 is added" in n for n in plan.notes), plan.notes
    assert any("numpy is kept below 2" in n for n in plan.notes)  # the older rule, beside it
    asked = write_model(tmp_path / "asked", "xgboost==1.4.2\nsetuptools==69.5.1\n",
                        flavors=flavors)
    own = compute_plan(PlanInputs.from_folder(asked))
    assert "setuptools==69.5.1" in own.locked
    assert not any("pkg_resources" in n for n in own.notes)


def test_a_pinned_framework_inside_another_flavor_counts_as_the_loaders():
    """An XGBClassifier in a scikit-learn Pipeline: unpickling imports xgboost, so its pin is
    the loader's (it blocks, `auto` compares it, the build's import check imports it); a
    transitive pin (dask) stays information."""
    flavors = {"sklearn": {"sklearn_version": "1.1.3", "serialization_format": "cloudpickle"}}
    text = "mlflow==2.17.2\nscikit-learn==1.1.3\nxgboost==1.4.2 --hash=sha256:00\ndask==2023.1.0\n"
    inputs = PlanInputs.from_texts("m", {"requirements.txt": text}, flavors)
    assert inputs.loader_distributions == ("cloudpickle", "mlflow", "scikit-learn", "xgboost")
