"""What a model asks for: its environment files read, its requirement lines checked.

A model's requirement files are written by others. Lines that choose a package index, include
other files, or install from a URL, a VCS or a local path would let a model decide where code
is downloaded from, so they are refused as a whole: nothing is installed from such a model.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deploystudio.environment import FLAVOR_DISTRIBUTIONS
from deploystudio.errors import InvalidModelError, RequirementsRefusedError

PYFUNC = "python_function"
ENVIRONMENT_FILES = ("requirements.txt", "conda.yaml", "python_env.yaml")
# Environment files are a few KB; a larger one is not an environment file.
MAX_FILE_CHARS = 1_000_000
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# pip options a requirements file may hold, by what they would do.
_INDEX_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--trusted-host",
)
_INCLUDE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_EDITABLE_OPTIONS = ("-e", "--editable")
_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
# Frameworks whose objects a model of another flavor holds (an XGBClassifier inside a
# scikit-learn Pipeline, a LightGBM booster in a custom pyfunc): unpickling imports them. When
# the model pins one, it counts as its loader's: its pin can block, `auto` compares it with the
# app's, and the build's import check imports it (a framework that cannot import is found at
# build time, not at the first prediction).
PICKLED_FRAMEWORKS = frozenset(
    {"scikit-learn", "xgboost", "lightgbm", "catboost", "statsmodels", "torch", "tensorflow",
     "keras"}
)
# `pkg==1.0 --hash=sha256:...` (pip-compile --generate-hashes): the hashes are dropped, the
# versions they belong to are installed from the configured index anyway.
_HASH_OPTION = re.compile(r"\s+--hash[=\s]\S+")


@dataclass(frozen=True)
class RefusedLine:
    file: str
    line: str
    kind: str  # "index option", "include", "VCS requirement", "URL requirement", ...
    why: str


@dataclass(frozen=True)
class AskedRequirement:
    """One requirement as the model asks it, from `file`."""

    file: str
    line: str
    requirement: Requirement

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def exact_version(self) -> str | None:
        pins = [s.version for s in self.requirement.specifier if s.operator in ("==", "===")]
        return pins[0] if len(pins) == 1 and "*" not in pins[0] else None


@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan is computed from: the environment files' text and what MLmodel says
    about the frameworks the model was saved with. Equal inputs give equal plans."""

    model_uri: str
    requirements_txt: str | None
    conda_yaml: str | None
    python_env_yaml: str | None
    # Distribution -> (MLmodel field, version), e.g. "scikit-learn": ("sklearn_version", "1.1.2").
    saved_with: dict[str, tuple[str, str]] = field(default_factory=dict)
    flavor_python: str | None = None
    # Distributions the model's loader imports: a pin of one that cannot be installed blocks.
    loader_distributions: tuple[str, ...] = ()

    def digest(self) -> str:
        data = {k: v for k, v in self.__dict__.items() if k != "model_uri"}
        text = json.dumps(data, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @classmethod
    def from_texts(
        cls, model_uri: str, texts: dict[str, str | None], flavors: dict[str, Any]
    ) -> PlanInputs:
        """From the environment files' text (by file name) and MLmodel's `flavors` mapping."""
        saved_with, loader = _flavor_facts(flavors)
        pyfunc = flavors.get(PYFUNC)
        flavor_python = pyfunc.get("python_version") if isinstance(pyfunc, dict) else None
        inputs = cls(
            model_uri=model_uri,
            requirements_txt=texts.get("requirements.txt"),
            conda_yaml=texts.get("conda.yaml"),
            python_env_yaml=texts.get("python_env.yaml"),
            saved_with=saved_with,
            flavor_python=str(flavor_python) if flavor_python else None,
            loader_distributions=loader,
        )
        pinned = _pinned_frameworks(inputs) - set(loader)
        if not pinned:
            return inputs
        return replace(inputs, loader_distributions=tuple(sorted({*loader, *pinned})))

    @classmethod
    def from_folder(cls, folder: Path, model_uri: str | None = None) -> PlanInputs:
        """From a model folder on this machine; files that lead out of it are not read."""
        root = folder.resolve()
        mlmodel = _read_inside(root, "MLmodel")
        if mlmodel is None:
            raise InvalidModelError(f"'{folder}' has no MLmodel file: it is not an MLflow model.")
        try:
            raw = yaml.load(mlmodel, Loader=_YAML_LOADER)
        except yaml.YAMLError as exc:
            message = f"The MLmodel file of '{folder}' cannot be read: {exc}"
            raise InvalidModelError(message) from exc
        flavors = raw.get("flavors") if isinstance(raw, dict) else None
        flavors = flavors if isinstance(flavors, dict) else {}
        texts = {name: _read_inside(root, name) for name in ENVIRONMENT_FILES}
        return cls.from_texts(model_uri or str(root), texts, flavors)


def _read_inside(root: Path, name: str) -> str | None:
    path = root / name
    if not path.is_file() or not path.resolve().is_relative_to(root):
        return None
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        return handle.read(MAX_FILE_CHARS)


def _pinned_frameworks(inputs: PlanInputs) -> set[str]:
    """The PICKLED_FRAMEWORKS the model's requirement lines name (lines that are no plain
    requirement are skipped here; `check_lines` refuses them when it matters)."""
    names = set()
    for _, line in requirement_lines(inputs)[1]:
        try:
            text = _HASH_OPTION.sub("", line.split(" #", 1)[0]).strip()
            name = canonicalize_name(Requirement(text).name)
        except InvalidRequirement:
            continue
        if name in PICKLED_FRAMEWORKS:
            names.add(name)
    return names


def _flavor_facts(flavors: dict[str, Any]) -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    """Framework versions from each flavor's `*_version` fields, read generically
    (`sklearn_version`, `xgb_version`, `lgb_version`, `pytorch_version`, ...), and the
    distributions the loader imports (mlflow, each framework, cloudpickle when pickled so)."""
    saved_with: dict[str, tuple[str, str]] = {}
    loader = {"mlflow"}
    for name, conf in flavors.items():
        if name == PYFUNC or not isinstance(conf, dict):
            continue
        distribution = canonicalize_name(FLAVOR_DISTRIBUTIONS.get(name, name))
        loader.add(distribution)
        if conf.get("serialization_format") == "cloudpickle":
            loader.add("cloudpickle")
        for key, value in conf.items():
            # A field written as null reads "None" through the inspection's details.
            if key.endswith("_version") and key != "python_version" and value not in (
                None,
                "None",
            ):
                saved_with.setdefault(distribution, (key, str(value)))
    return saved_with, tuple(sorted(loader))


# --- requirement lines ---------------------------------------------------------------------


def conda_pip_lines(conda_yaml: str | None) -> list[str] | None:
    """The `pip:` section of conda.yaml's dependencies; None without one."""
    data = _yaml_mapping(conda_yaml)
    for entry in data.get("dependencies") or []:
        if isinstance(entry, dict) and isinstance(entry.get("pip"), list):
            return [str(line) for line in entry["pip"]]
    return None


def conda_python(conda_yaml: str | None) -> str | None:
    for entry in _yaml_mapping(conda_yaml).get("dependencies") or []:
        if isinstance(entry, str) and re.match(r"^python\s*[=<>]", entry):
            return re.sub(r"^python\s*=*\s*", "", entry).strip() or None
    return None


def _yaml_mapping(text: str | None) -> dict:
    if not text:
        return {}
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def python_env(inputs: PlanInputs) -> dict:
    return _yaml_mapping(inputs.python_env_yaml)


def requirement_lines(inputs: PlanInputs) -> tuple[str, list[tuple[str, str]]]:
    """Which file(s) the requirements come from, and each (file, line), the way MLflow builds a
    virtualenv: python_env.yaml's dependencies (its `-r requirements.txt` read from the model),
    else conda.yaml's pip section, else requirements.txt."""
    env = python_env(inputs)
    dependencies = env.get("dependencies")
    if isinstance(dependencies, list):
        lines: list[tuple[str, str]] = []
        source = "python_env.yaml"
        for entry in dependencies:
            text = str(entry).strip()
            if re.fullmatch(r"(-r|--requirement)\s*=?\s*requirements\.txt", text):
                # MLflow's own link to the model's requirements.txt: the one include allowed.
                source = "python_env.yaml + requirements.txt"
                lines.extend(("requirements.txt", raw) for raw in _lines(inputs.requirements_txt))
            else:
                lines.append(("python_env.yaml", text))
        return source, lines
    pip_lines = conda_pip_lines(inputs.conda_yaml)
    if pip_lines is not None:
        return "conda.yaml", [("conda.yaml", line) for line in pip_lines]
    if inputs.requirements_txt is not None:
        lines = [("requirements.txt", raw) for raw in _lines(inputs.requirements_txt)]
        return "requirements.txt", lines
    return "", []


def _lines(text: str | None) -> list[str]:
    return (text or "").splitlines()


def check_lines(lines: list[tuple[str, str]]) -> list[AskedRequirement]:
    """The requirements, or RequirementsRefusedError naming every line that is refused."""
    asked: list[AskedRequirement] = []
    refused: list[RefusedLine] = []
    for file, raw in lines:
        line = _HASH_OPTION.sub("", raw.split(" #", 1)[0]).strip()
        if not line or line.startswith("#"):
            continue
        problem = refusal(file, line)
        if problem is not None:
            refused.append(problem)
            continue
        asked.append(AskedRequirement(file, line, Requirement(line)))
    if refused:
        raise RequirementsRefusedError(refusal_message(refused))
    return asked


def refusal(file: str, line: str) -> RefusedLine | None:
    """Why `line` is refused, or None for a plain requirement (name, versions, extras, markers)."""
    option = line.split("=", 1)[0].split()[0] if line.startswith("-") else ""
    if option:
        if option in _INDEX_OPTIONS or any(line.startswith(o) for o in ("-i", "-f")):
            why = "a model may not choose where packages come from; set the index for pip or uv"
            return RefusedLine(file, line, "index option", why)
        if option in _INCLUDE_OPTIONS or line.startswith(("-r", "-c")):
            return RefusedLine(file, line, "include", "other files are not read")
        if option in _EDITABLE_OPTIONS or line.startswith("-e"):
            return RefusedLine(file, line, "editable install", "installs from a path or a VCS")
        return RefusedLine(file, line, "option line", "pip options are not passed on")
    lowered = line.lower()
    if lowered.startswith(_VCS_PREFIXES) or re.search(r"@\s*(git|hg|svn|bzr)\+", lowered):
        return RefusedLine(file, line, "VCS requirement", "installs code from a repository")
    if "://" in line:
        return RefusedLine(file, line, "URL requirement", "installs a file from an address")
    if line.startswith((".", "/", "~", "\\")) or lowered.endswith(_ARCHIVE_SUFFIXES):
        return RefusedLine(file, line, "local path", "installs from a file on this machine")
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        if "/" in line or "\\" in line:
            return RefusedLine(file, line, "local path", "installs from a file on this machine")
        return RefusedLine(file, line, "not a requirement", str(exc).splitlines()[0])
    if requirement.url:
        return RefusedLine(file, line, "URL requirement", "installs a file from an address")
    return None


def refusal_message(refused: list[RefusedLine]) -> str:
    listed = "; ".join(f"{r.file}: '{r.line[:80]}' ({r.kind}: {r.why})" for r in refused[:10])
    more = f"; and {len(refused) - 10} more" if len(refused) > 10 else ""
    return (
        f"The model's requirements have {len(refused)} line(s) that are refused, so nothing is "
        f"installed: {listed}{more}. Remove those lines and re-log the model (the package index "
        "comes from your pip or uv settings), or run it in the app's environment with --env app."
    )
