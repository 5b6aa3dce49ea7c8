"""The environment a scoring script runs in on Azure ML: a conda.yaml and a base image.

The layout follows the Azure ML examples (conda-forge, python=X, pip, a pip list with mlflow and
azureml-inference-server-http) and MLflow's own conda.yaml, so either tool reads it unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deploystudio.environment import (
    installed_version,
    parse_requirements,
    python_version_from_env_files,
    running_python_version,
)

DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
INFERENCE_SERVER = "azureml-inference-server-http"
ENVIRONMENT_NAME = "mlflow-env"
# Either distribution provides mlflow.pyfunc, which the scoring scripts load the model with.
MLFLOW_DISTRIBUTIONS = frozenset({"mlflow", "mlflow-skinny"})
# pip options that name another file: the environment is built without the model's files.
_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")

# Docker's image reference grammar (github.com/distribution/reference, regexp.go). Written out
# because no library in this stack validates it: docker-py's parse_repository_tag only splits.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::{_TAG})?(?:@{_DIGEST})?$"
)
_MAX_IMAGE_NAME = 255
# The distribution name at the start of a conda spec such as `conda-forge::mlflow>=2`.
_CONDA_NAME = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class EnvironmentSpec:
    """What Azure ML builds the scoring container from; both fields are user-editable text."""

    conda_yaml: str
    base_image: str


def generate_environment(model_path: Path) -> EnvironmentSpec:
    """A conda.yaml with the model's own pinned requirements plus what the inference server needs.

    `model_path` is a local MLflow model folder (the one holding MLmodel).
    """
    conda = _read_yaml(model_path / "conda.yaml")
    pip_lines, dropped = _model_pip_lines(model_path, conda)
    names = {_pip_name(line) for line in pip_lines} - {None}
    if not names & MLFLOW_DISTRIBUTIONS:
        pip_lines.append(f"mlflow=={installed_version('mlflow')}")
    if INFERENCE_SERVER not in names:
        pip_lines.append(f"{INFERENCE_SERVER}=={installed_version(INFERENCE_SERVER)}")
    document = {
        "name": ENVIRONMENT_NAME,
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={_python_version(model_path, conda)}",
            _pip_spec(conda),
            {"pip": pip_lines},
        ],
    }
    header = "".join(
        f"# Left out '{line}': it names a file that is not part of the environment build.\n"
        for line in dropped
    )
    text = header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    return EnvironmentSpec(conda_yaml=text, base_image=DEFAULT_BASE_IMAGE)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def _model_pip_lines(model_path: Path, conda: Any) -> tuple[list[str], list[str]]:
    """The model's requirements (requirements.txt, else conda.yaml's pip list), pins kept,
    first occurrence of each distribution only; and the lines left out."""
    requirements_file = model_path / "requirements.txt"
    if requirements_file.is_file():
        raw_lines = requirements_file.read_text(encoding="utf-8").splitlines()
    else:
        raw_lines = [str(line) for line in _conda_pip_list(conda)]
    requirements, unparsed = parse_requirements("\n".join(raw_lines))
    kept: list[str] = []
    seen: set[str] = set()
    for requirement in requirements:
        if requirement.name not in seen:
            seen.add(requirement.name)
            kept.append(requirement.line)
    dropped: list[str] = []
    for line in unparsed:
        if line.split("=", 1)[0].split()[0] in _FILE_OPTIONS:
            dropped.append(line)
        else:
            kept.append(line)  # index URLs and direct references still install from pip
    return kept, dropped


def _conda_pip_list(conda: Any) -> list[Any]:
    dependencies = conda.get("dependencies") if isinstance(conda, dict) else None
    for entry in dependencies or []:
        if isinstance(entry, dict) and isinstance(entry.get("pip"), list):
            return entry["pip"]
    return []


def _python_version(model_path: Path, conda: Any) -> str:
    python_env = model_path / "python_env.yaml"
    text = python_env.read_text(encoding="utf-8") if python_env.is_file() else None
    declared = python_version_from_env_files(text, None)
    if declared:
        return declared
    dependencies = conda.get("dependencies") if isinstance(conda, dict) else None
    for entry in dependencies or []:
        if isinstance(entry, str) and _conda_name(entry) == "python":
            version = entry[len("python") :].lstrip("=")
            if version:
                return version
    return ".".join(running_python_version().split(".")[:2])


def _pip_spec(conda: Any) -> str:
    """pip as the model's conda.yaml constrains it (MLflow caps it at the version that logged
    the model), else unconstrained."""
    dependencies = conda.get("dependencies") if isinstance(conda, dict) else None
    for entry in dependencies or []:
        if isinstance(entry, str) and _conda_name(entry) == "pip":
            return entry
    return "pip"


def _pip_name(line: str) -> str | None:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return None


def _conda_name(spec: str) -> str | None:
    match = _CONDA_NAME.match(spec.strip())
    return canonicalize_name(match.group(1)) if match else None


def validate_environment(spec: EnvironmentSpec) -> list[str]:
    """What a user must fix in an edited environment before it can be built; empty when fine."""
    return _conda_problems(spec.conda_yaml) + _image_problems(spec.base_image)


def _conda_problems(text: str) -> list[str]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return [f"conda.yaml is not valid YAML{where}: {problem}. Fix the text there."]
    if not isinstance(document, dict):
        return ["conda.yaml must be a mapping with `name`, `channels` and `dependencies` keys."]
    dependencies = document.get("dependencies")
    if not isinstance(dependencies, list) or not dependencies:
        return [
            "conda.yaml has no `dependencies` list: add one with python, pip and a `pip:` list."
        ]
    pip_entries = [e for e in dependencies if isinstance(e, dict) and "pip" in e]
    pip_list = pip_entries[0]["pip"] if pip_entries else None
    if not isinstance(pip_list, list) or not pip_list:
        return [
            "conda.yaml has no `pip:` section under `dependencies`: add one listing mlflow and "
            f"{INFERENCE_SERVER}."
        ]
    names = {_pip_name(str(line)) for line in pip_list}
    names |= {_conda_name(e) for e in dependencies if isinstance(e, str)}
    problems = []
    if INFERENCE_SERVER not in names:
        problems.append(
            f"conda.yaml does not install {INFERENCE_SERVER}, which serves the scoring script on "
            f"Azure ML: add `{INFERENCE_SERVER}` to the pip list."
        )
    if not names & MLFLOW_DISTRIBUTIONS:
        problems.append(
            "conda.yaml does not install mlflow, which the scoring script loads the model with: "
            "add `mlflow` (pinned to the model's version) to the pip list."
        )
    return problems


def _image_problems(image: str) -> list[str]:
    image = image.strip()
    if not image:
        return [f"Enter a base image, for example {DEFAULT_BASE_IMAGE}."]
    match = _IMAGE_REFERENCE.match(image)
    if match is None or len(match.group("name")) > _MAX_IMAGE_NAME:
        return [
            f"'{image}' is not an image name: write registry/name[:tag] or registry/name@digest "
            f"in lowercase, for example {DEFAULT_BASE_IMAGE}."
        ]
    return []
