"""A model's declared environment (requirements, Python version) against what runs here."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# MLflow flavor name -> the distribution that provides the framework, where they differ.
FLAVOR_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "pytorch": "torch",
    "h2o": "h2o",
    "spark": "pyspark",
    "paddle": "paddlepaddle",
}


@dataclass(frozen=True)
class DeclaredRequirement:
    """One line of requirements.txt. `pinned_version` is set only for an exact `==` pin."""

    line: str
    name: str
    pinned_version: str | None
    installed_version: str | None


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(canonicalize_name(distribution))
    except importlib.metadata.PackageNotFoundError:
        return None


def running_python_version() -> str:
    return platform.python_version()


def parse_requirements(text: str) -> tuple[list[DeclaredRequirement], list[str]]:
    """Requirements and the lines that are not requirements we can check (options, URLs)."""
    requirements: list[DeclaredRequirement] = []
    unparsed: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            unparsed.append(line)
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            unparsed.append(line)
            continue
        pins = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
        pinned = pins[0] if len(pins) == 1 and "*" not in pins[0] else None
        requirements.append(
            DeclaredRequirement(
                line=line,
                name=canonicalize_name(requirement.name),
                pinned_version=pinned,
                installed_version=installed_version(requirement.name),
            )
        )
    return requirements, unparsed


def python_version_from_env_files(
    python_env_yaml: str | None, flavor_python_version: str | None
) -> str | None:
    """The model's Python version: python_env.yaml first, then the pyfunc flavor."""
    if python_env_yaml:
        try:
            data = yaml.safe_load(python_env_yaml)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict) and data.get("python"):
            return str(data["python"])
    return flavor_python_version


def same_minor(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]
