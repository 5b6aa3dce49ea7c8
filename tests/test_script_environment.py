"""The generated conda.yaml for real models, and each problem validate_environment reports."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from pathlib import Path

import pytest
import yaml

from deploystudio.customization.script_environment import (
    DEFAULT_BASE_IMAGE,
    EnvironmentSpec,
    generate_environment,
    validate_environment,
)
from deploystudio.prediction import local_model_path

SERVER_PIN = (
    f"azureml-inference-server-http=={importlib.metadata.version('azureml-inference-server-http')}"
)
MLFLOW_PIN = f"mlflow=={importlib.metadata.version('mlflow')}"
GOOD_CONDA = """name: mlflow-env
channels:
- conda-forge
dependencies:
- python=3.11
- pip
- pip:
  - mlflow==3.17.2
  - azureml-inference-server-http==1.5.1
"""


@pytest.fixture(scope="module")
def demo_paths(settings, registry, seeded) -> dict[str, Path]:
    return {
        name: local_model_path(f"models:/{name}/1", settings, registry)
        for name in ("iris-classifier", "cancer-risk-scorer")
    }


def _parts(spec: EnvironmentSpec) -> tuple[dict, list[str], list[str]]:
    document = yaml.safe_load(spec.conda_yaml)
    conda = [d for d in document["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in document["dependencies"] if isinstance(d, dict))
    return document, conda, pip


def _requirement_lines(model: Path) -> list[str]:
    return [line for line in (model / "requirements.txt").read_text().splitlines() if line]


@pytest.mark.parametrize("name", ["iris-classifier", "cancer-risk-scorer"])
def test_demo_model_environment_keeps_its_pins_and_adds_the_server(demo_paths, name):
    model = demo_paths[name]
    spec = generate_environment(model)
    document, conda, pip = _parts(spec)
    assert document["name"] == "mlflow-env"
    assert document["channels"] == ["conda-forge"]
    declared_python = yaml.safe_load((model / "python_env.yaml").read_text())["python"]
    assert conda[0] == f"python={declared_python}"
    assert conda[1].startswith("pip")
    # The model's own lines, in order and unchanged, then only the server.
    assert pip == [*_requirement_lines(model), SERVER_PIN]
    assert pip.count(MLFLOW_PIN) == 1
    assert spec.base_image == DEFAULT_BASE_IMAGE
    assert validate_environment(spec) == []


def test_cancer_risk_scorer_keeps_cloudpickle(demo_paths):
    _, _, pip = _parts(generate_environment(demo_paths["cancer-risk-scorer"]))
    assert any(line.startswith("cloudpickle==") for line in pip)


def test_azure_example_model_environment(azure_diabetes_model):
    spec = generate_environment(azure_diabetes_model)
    _, conda, pip = _parts(spec)
    # Python 3.12.3 and pip<=23.1.2 as the model declares them, not this machine's.
    assert conda == ["python=3.12.3", "pip<=23.1.2"]
    assert pip == [
        "mlflow",
        "cloudpickle==3.1.1",
        "psutil==5.9.4",
        "scikit-learn==1.6.1",
        SERVER_PIN,
    ]
    assert validate_environment(spec) == []


def _model_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_requirements_are_deduplicated_and_file_references_left_out(azure_diabetes_model, tmp_path):
    model = _model_copy(azure_diabetes_model, tmp_path / "model")
    (model / "requirements.txt").write_text(
        "scikit-learn==1.6.1\n"
        "-r extra-requirements.txt\n"
        "--extra-index-url https://example.org/simple\n"
        "Scikit_Learn==1.5.0\n"
        "azureml-inference-server-http==1.4.0  # the model's own choice\n"
    )
    spec = generate_environment(model)
    _, _, pip = _parts(spec)
    assert pip == [
        "scikit-learn==1.6.1",
        "azureml-inference-server-http==1.4.0",
        "--extra-index-url https://example.org/simple",
        MLFLOW_PIN,
    ]
    assert "# Left out '-r extra-requirements.txt'" in spec.conda_yaml
    assert validate_environment(spec) == []


def test_python_from_conda_yaml_then_the_running_minor(azure_diabetes_model, tmp_path):
    model = _model_copy(azure_diabetes_model, tmp_path / "model")
    (model / "python_env.yaml").unlink()
    _, conda, _ = _parts(generate_environment(model))
    assert conda[0] == "python=3.12.3"  # from conda.yaml
    (model / "conda.yaml").unlink()
    _, conda, pip = _parts(generate_environment(model))
    running_minor = ".".join(platform.python_version_tuple()[:2])
    assert conda == [f"python={running_minor}", "pip"]
    assert pip[-1] == SERVER_PIN


def test_conda_pip_list_is_used_without_requirements_txt(azure_diabetes_model, tmp_path):
    model = _model_copy(azure_diabetes_model, tmp_path / "model")
    (model / "requirements.txt").unlink()
    _, _, pip = _parts(generate_environment(model))
    # The model's conda.yaml already lists the server (unpinned): it is not added again.
    assert pip == [
        "mlflow",
        "scikit-learn==1.6.1",
        "psutil==5.9.4",
        "azureml-ai-monitoring",
        "azureml-inference-server-http",
    ]


def _problems(conda_yaml: str = GOOD_CONDA, image: str = DEFAULT_BASE_IMAGE) -> list[str]:
    return validate_environment(EnvironmentSpec(conda_yaml=conda_yaml, base_image=image))


def test_a_good_environment_has_no_problems():
    assert _problems() == []


def test_yaml_that_does_not_parse_names_line_and_column():
    broken = GOOD_CONDA.replace("- pip\n", "- pip\n  bad: [\n")
    (problem,) = _problems(broken)
    # Line 7 is "  bad: [": PyYAML stops at its colon, the sixth character.
    assert "not valid YAML at line 7, column 6" in problem
    assert "mapping values are not allowed" in problem


@pytest.mark.parametrize(
    ("conda_yaml", "expected"),
    [
        ("- python=3.11\n", "must be a mapping"),
        ("name: x\nchannels: [conda-forge]\n", "no `dependencies` list"),
        ("name: x\ndependencies: []\n", "no `dependencies` list"),
        ("name: x\ndependencies:\n- python=3.11\n- pip\n", "no `pip:` section"),
        ("name: x\ndependencies:\n- python=3.11\n- pip:\n  - mlflow\n", "azureml-inference"),
        ("name: x\ndependencies:\n- pip:\n  - azureml-inference-server-http\n", "install mlflow"),
    ],
)
def test_each_conda_problem(conda_yaml, expected):
    (problem,) = _problems(conda_yaml)
    assert expected in problem


def test_missing_server_and_mlflow_are_both_reported():
    problems = _problems("dependencies:\n- pip:\n  - numpy==2.0\n")
    assert len(problems) == 2


def test_mlflow_skinny_or_a_conda_package_counts():
    assert _problems(GOOD_CONDA.replace("mlflow==3.17.2", "mlflow-skinny==3.17.2")) == []
    conda_mlflow = (
        "dependencies:\n- conda-forge::mlflow=2.7\n- pip:\n  - azureml-inference-server-http\n"
    )
    assert _problems(conda_mlflow) == []


@pytest.mark.parametrize(
    "image",
    [
        DEFAULT_BASE_IMAGE,
        "mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04",
        "python:3.11-slim",
        "localhost:5000/team/scoring_base:v1.2",
        "myregistry.azurecr.io/base@sha256:" + "a" * 64,
    ],
)
def test_good_image_names(image):
    assert _problems(image=image) == []


@pytest.mark.parametrize(
    "image",
    [
        "mcr.microsoft.com/AzureML/openmpi",  # repository paths are lowercase
        "mcr.microsoft.com/azureml/openmpi:",  # empty tag
        "mcr.microsoft.com/azureml openmpi",
        "base@sha256:abc",  # digest too short
        "https://mcr.microsoft.com/azureml/openmpi",
    ],
)
def test_malformed_image_names(image):
    (problem,) = _problems(image=image)
    assert "is not an image name" in problem


def test_empty_image_name():
    (problem,) = _problems(image="  ")
    assert "Enter a base image" in problem
