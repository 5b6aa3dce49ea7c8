"""The environment part of a version's report: the model's environment files as read
(requirements.txt, conda.yaml, python_env.yaml) and the checks on them against this machine
(pins, readable files, MLflow, framework, package and Python versions). `inspection.py` puts
these checks into the deployability report in their place."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from deploystudio.checks import Check, CheckStatus
from deploystudio.environment import (
    FLAVOR_DISTRIBUTIONS,
    DeclaredRequirement,
    installed_version,
    parse_requirements,
    python_version_from_env_files,
    running_python_version,
    same_minor,
)
from deploystudio.errors import UnsafePathError
from deploystudio.model_files import ModelFiles

ENVIRONMENT_FILES = ("requirements.txt", "conda.yaml", "python_env.yaml")
# libyaml's loader when PyYAML has it: the same safe loading, ten times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class EnvironmentFiles:
    requirements_txt: str | None
    conda_yaml: str | None
    python_env_yaml: str | None
    requirements: list[DeclaredRequirement]
    unparsed_requirement_lines: list[str]
    model_python_version: str | None
    # Files present but not read (e.g. a link out of the folder), with why: a report item,
    # not a reason to stop inspecting the rest of the model.
    refused: dict[str, str] = field(default_factory=dict)


def read_environment_files(files: ModelFiles, flavor_python: str | None) -> EnvironmentFiles:
    """The model's environment files as found; `flavor_python` is the Python its pyfunc flavor
    names, used when python_env.yaml does not say."""
    texts: dict[str, str | None] = {}
    refused: dict[str, str] = {}
    for name in ENVIRONMENT_FILES:
        try:
            texts[name] = files.read_text(name)
        except UnsafePathError as exc:
            texts[name], refused[name] = None, str(exc)
    requirements, unparsed = parse_requirements(texts["requirements.txt"] or "")
    return EnvironmentFiles(
        requirements_txt=texts["requirements.txt"],
        conda_yaml=texts["conda.yaml"],
        python_env_yaml=texts["python_env.yaml"],
        requirements=requirements,
        unparsed_requirement_lines=unparsed,
        model_python_version=python_version_from_env_files(texts["python_env.yaml"], flavor_python),
        refused=refused,
    )


def environment_checks(
    env: EnvironmentFiles, mlflow_version: str | None, saved_with: dict[str, str]
) -> list[Check]:
    """The report's environment lines, in the order the report shows them. `saved_with` maps
    each flavor (not pyfunc) to the framework version it was serialised with."""
    checks = [
        _pinning_check(env),
        _environment_files_check(env),
        _mlflow_version_check(mlflow_version),
        *_framework_checks(env, saved_with),
        *_package_checks(env),
        _python_check(env),
    ]
    return [c for c in checks if c is not None]


def _pinning_check(env: EnvironmentFiles) -> Check:
    if env.requirements_txt is None:
        found = "requirements.txt was not read (see Environment files)"
        return Check(
            "Requirements pinned",
            CheckStatus.WARN,
            f"{found if 'requirements.txt' in env.refused else 'No requirements.txt'}: the "
            "serving environment cannot be rebuilt as it was trained.",
            "Re-log the model (MLflow writes requirements.txt) or add pip_requirements.",
        )
    unpinned = [r.name for r in env.requirements if r.pinned_version is None]
    if unpinned:
        return Check(
            "Requirements pinned",
            CheckStatus.WARN,
            f"Not pinned with ==: {', '.join(unpinned)}. They resolve to whatever is newest "
            "when the environment is built, which may not load this model.",
            "Pin each with == to the version the model was trained with.",
        )
    return Check(
        "Requirements pinned",
        CheckStatus.PASS,
        f"All {len(env.requirements)} requirement(s) pinned with ==.",
    )


def _environment_files_check(env: EnvironmentFiles) -> Check | None:
    """Environment files that pip or conda could not read: each named, with what is wrong."""
    problems = []
    # Lines starting with "-" are pip options (-r, --index-url): those are fine.
    unreadable = [line for line in env.unparsed_requirement_lines if not line.startswith("-")]
    if unreadable:
        shown = ", ".join(repr(line[:40]) for line in unreadable[:3])
        more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        problems.append(f"requirements.txt has lines pip cannot read: {shown}{more}")
    for name, text in (("conda.yaml", env.conda_yaml), ("python_env.yaml", env.python_env_yaml)):
        if text is not None and not _is_yaml_mapping(text):
            problems.append(f"{name} is not a YAML mapping")
    problems.extend(why.rstrip(".") for why in env.refused.values())
    if not problems:
        return None
    return Check(
        "Environment files",
        CheckStatus.WARN,
        "; ".join(problems) + ": the serving environment cannot be built from them.",
        "Re-log the model (MLflow writes these files), or fix them by hand.",
    )


def _is_yaml_mapping(text: str) -> bool:
    try:
        return isinstance(yaml.load(text, Loader=_YAML_LOADER), dict)
    except yaml.YAMLError:
        return False


def _mlflow_version_check(saved: str | None) -> Check | None:
    here = installed_version("mlflow")
    if not saved or not here:
        return None
    if saved.split(".")[0] == here.split(".")[0]:
        return Check(
            "MLflow version", CheckStatus.PASS, f"Saved with MLflow {saved}; {here} here reads it."
        )
    return Check(
        "MLflow version",
        CheckStatus.WARN,
        f"Saved with MLflow {saved}, another major version than {here} here: loaders and "
        "payload handling changed between them.",
        f"Pin mlflow=={saved} where it is served, or re-log it with MLflow {here}.",
    )


def _framework_checks(env: EnvironmentFiles, saved_with: dict[str, str]) -> list[Check]:
    """The framework version the model was serialised with, against its pin and this machine."""
    checks = []
    pins = {r.name: r.pinned_version for r in env.requirements}
    for flavor, saved in saved_with.items():
        distribution = FLAVOR_DISTRIBUTIONS.get(flavor, flavor)
        pinned = pins.get(distribution)
        here = installed_version(distribution)
        problems = []
        if pinned and pinned != saved:
            problems.append(f"requirements.txt installs {pinned} to serve it")
        if here is None:
            problems.append("it is not installed here")
        elif here != saved:
            problems.append(f"{here} is installed here")
        name = f"Saved with {distribution}"
        if not problems:
            checks.append(
                Check(
                    name, CheckStatus.PASS, f"Saved with {distribution} {saved}, as installed here."
                )
            )
            continue
        checks.append(
            Check(
                name,
                CheckStatus.WARN,
                f"Saved with {distribution} {saved}, but {' and '.join(problems)}: a pickle is "
                "not guaranteed to load, or to predict the same, under another version.",
                f"Pin {distribution}=={saved} in its requirements, or re-log it with the version "
                "you serve with.",
            )
        )
    return checks


def _package_checks(env: EnvironmentFiles) -> list[Check]:
    checks = []
    for requirement in env.requirements:
        if requirement.pinned_version is None:
            continue
        name = requirement.name
        installed = requirement.installed_version
        if installed is None:
            checks.append(
                Check(
                    f"Package {name}",
                    CheckStatus.WARN,
                    f"Needs {name}=={requirement.pinned_version}, not installed here: a local "
                    "preview cannot load the model (a served environment installs it).",
                    f"pip install {name}=={requirement.pinned_version} to preview it here.",
                )
            )
        elif installed != requirement.pinned_version:
            checks.append(
                Check(
                    f"Package {name}",
                    CheckStatus.WARN,
                    f"Needs {name}=={requirement.pinned_version}, {installed} is installed here: "
                    "local previews may differ from the served model, or fail to load it.",
                    f"Compare predictions once deployed, or re-log it with {name} {installed}.",
                )
            )
        else:
            checks.append(
                Check(
                    f"Package {name}", CheckStatus.PASS, f"{name}=={installed}, as installed here."
                )
            )
    return checks


def _python_check(env: EnvironmentFiles) -> Check:
    model_python = env.model_python_version
    here = running_python_version()
    if model_python is None:
        return Check(
            "Python version",
            CheckStatus.WARN,
            "The model does not say which Python it was saved with.",
            "Re-log it with a current MLflow, which records python_env.yaml.",
        )
    if same_minor(model_python, here):
        return Check(
            "Python version",
            CheckStatus.PASS,
            f"Saved with Python {model_python}; this machine runs {here}.",
        )
    return Check(
        "Python version",
        CheckStatus.WARN,
        f"Saved with Python {model_python}; this machine runs {here}: pickled objects may not "
        "load here (a served environment uses the model's own Python).",
        f"Preview it on Python {'.'.join(model_python.split('.')[:2])}, or re-log it on {here}.",
    )
