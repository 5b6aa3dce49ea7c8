"""The environment plan: what would be installed for a model, each version and why.

The versions come from uv (`uv pip compile` for this machine's interpreter), not from a
resolver of our own: uv reads the index, the wheels' tags and the dependency metadata. This
module only asks it the questions a user needs answered: is the exact pin installable here,
and if not, which nearest release is.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from deploystudio.environments.sources import (
    AskedRequirement,
    PlanInputs,
    check_lines,
    conda_pip_lines,
    conda_python,
    python_env,
    requirement_lines,
)
from deploystudio.environments.uv import index_settings, run_uv, uv_environment

# 2: plans add setuptools<82 for frameworks of before it (see _setuptools_added); a plan cached
# in format 1 is computed again, so an environment that lacked pkg_resources is rebuilt.
PLAN_FORMAT = 2
# numpy 2.0.0 was uploaded to PyPI on 2024-06-16.
NUMPY_2_RELEASED = "2024-06-16T00:00:00Z"
# setuptools 82.0.0, which removed pkg_resources, was released on 2026-02-08.
SETUPTOOLS_82_RELEASED = "2026-02-08T00:00:00Z"
SETUPTOOLS_WITH_PKG_RESOURCES = "setuptools<82"


class Choice(Enum):
    EXACT = "exact"  # the pinned version, as asked
    NEAREST = "nearest"  # the pin has no wheel here; the nearest later patch release has one
    RESOLVED = "resolved"  # not pinned: the newest release that fits the other requirements
    RELAXED = "relaxed"  # a pin not installable here, of a package the loader does not import
    FROM_SOURCE = "from-source"  # the package publishes no wheels at all: built from its sdist
    NOT_NEEDED = "not-needed"  # its environment marker excludes this machine
    NOT_INSTALLABLE = "not-installable"


@dataclass(frozen=True)
class PlannedRequirement:
    name: str
    line: str
    file: str
    asked: str  # the version specifier as asked ("==1.6.1", ">=2", "" for any)
    chosen: str | None
    choice: Choice
    reason: str
    loader_imports: bool  # the model's loader imports it: not installable means blocked
    saved_with: str | None = None  # "sklearn_version 1.1.2" from MLmodel, when it says


@dataclass(frozen=True)
class PythonChoice:
    asked: str | None
    asked_in: str | None
    used: str
    path: str
    match: str  # "exact", "same-minor", "different", "not-asked"
    note: str


@dataclass(frozen=True)
class EnvironmentPlan:
    model_uri: str
    inputs_digest: str
    source: str
    python: PythonChoice
    requirements: list[PlannedRequirement]
    locked: list[str]  # every distribution to install, "name==version", sorted
    blockers: list[str]
    notes: list[str] = field(default_factory=list)
    index: str = ""

    @property
    def key(self) -> str | None:
        """The environment's identity: the exact set installed and the interpreter; None when
        the plan cannot be built."""
        if self.blockers:
            return None
        text = json.dumps([self.python.path, self.python.used, self.locked])
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["key"] = self.key
        for requirement in data["requirements"]:
            requirement["choice"] = requirement["choice"].value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EnvironmentPlan:
        return cls(
            model_uri=data["model_uri"],
            inputs_digest=data["inputs_digest"],
            source=data["source"],
            python=PythonChoice(**data["python"]),
            requirements=[
                PlannedRequirement(**{**r, "choice": Choice(r["choice"])})
                for r in data["requirements"]
            ],
            locked=list(data["locked"]),
            blockers=list(data["blockers"]),
            notes=list(data["notes"]),
            index=data.get("index", ""),
        )


# --- Python ----------------------------------------------------------------------------------


def app_python() -> tuple[str, str]:
    """This app's interpreter (the one its virtualenv was made from) and its version."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(base)), platform.python_version()


def choose_python(inputs: PlanInputs, env: dict[str, str]) -> PythonChoice:
    """The interpreter for the model: the version asked if it is installed here, else one of
    the same minor, else the app's own. Python builds are never downloaded
    (UV_PYTHON_DOWNLOADS=never), so a missing version is reported, not fetched."""
    asked, asked_in = _asked_python(inputs)
    path, version = app_python()
    if asked is None:
        return PythonChoice(
            None, None, version, path, "not-asked", "The model does not say which Python it "
            f"was saved with; the app's Python {version} is used."
        )
    minor = ".".join(asked.split(".")[:2])
    for request, match in ((asked, "exact"), (minor, "same-minor")):
        if version == asked or (match == "same-minor" and version.startswith(minor + ".")):
            found = (path, version)
        else:
            found = _find_installed_python(request, env)
        if found is not None:
            note = (
                f"Python {asked} as asked."
                if match == "exact"
                else f"Python {asked} is not installed here; {found[1]} (same minor) is used."
            )
            return PythonChoice(asked, asked_in, found[1], found[0], match, note)
    return PythonChoice(
        asked,
        asked_in,
        version,
        path,
        "different",
        f"The model asks Python {asked} ({asked_in}); no Python {minor} is installed here, and "
        f"Python builds cannot be downloaded here, so the app's Python {version} is used: "
        "pickled objects may not load, or may behave differently. Install Python "
        f"{minor} on this machine to use it.",
    )


def _asked_python(inputs: PlanInputs) -> tuple[str | None, str | None]:
    env_python = python_env(inputs).get("python")
    if env_python:
        return str(env_python), "python_env.yaml"
    if inputs.flavor_python:
        return inputs.flavor_python, "MLmodel"
    from_conda = conda_python(inputs.conda_yaml)
    return (from_conda, "conda.yaml") if from_conda else (None, None)


def _find_installed_python(request: str, env: dict[str, str]) -> tuple[str, str] | None:
    result = run_uv(
        ["python", "find", "--system", "--no-python-downloads", request], env
    )
    if result.returncode != 0 or not result.stdout.strip():
        return None
    path = result.stdout.strip().splitlines()[-1]
    version = _version_of(path)
    return (path, version) if version else None


def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# --- requirements ----------------------------------------------------------------------------


class _Compiler:
    """`uv pip compile` for one interpreter: requirement lines in, `name==version` lines out."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.python = python
        self.env = env

    def compile(
        self, lines: list[str], *, no_deps: bool = False, wheels_only: bool = False,
        lowest: bool = False,
        uploaded_before: str | None = None,
    ) -> tuple[dict[str, str] | None, str]:
        with tempfile.TemporaryDirectory(prefix="deploystudio-plan-") as folder:
            source = Path(folder) / "requirements.in"
            source.write_text("\n".join(lines) + "\n", encoding="utf-8")
            args = [
                "pip", "compile", str(source), "--python", self.python, "--no-header",
                "--no-annotate", "--quiet",
            ]
            args += ["--no-deps"] if no_deps else []
            args += ["--only-binary", ":all:"] if wheels_only else []
            args += ["--resolution", "lowest-direct"] if lowest else []
            args += ["--exclude-newer", uploaded_before] if uploaded_before else []
            result = run_uv(args, self.env)
        if result.returncode != 0:
            return None, result.cause
        pins = {}
        for line in result.stdout.splitlines():
            name, sep, version = line.strip().partition("==")
            if sep and not line.startswith(("#", " ")):
                pins[canonicalize_name(name.strip())] = version.split(";")[0].strip()
        return pins, ""


def _next_minor(version: str) -> str | None:
    try:
        parsed = Version(version)
    except InvalidVersion:
        return None
    return f"{parsed.major}.{parsed.minor + 1}" if len(parsed.release) >= 2 else None


def _check_pin(
    asked: AskedRequirement, compiler: _Compiler, python: PythonChoice
) -> tuple[Choice, str | None, str]:
    """Whether an exact pin has a wheel for this interpreter; if not, the nearest that has."""
    name, version = asked.name, asked.exact_version
    assert version is not None
    pins, cause = compiler.compile([f"{name}=={version}"], no_deps=True, wheels_only=True)
    if pins is not None:
        return Choice.EXACT, version, "exact pin"
    here = f"CPython {python.used} on {platform.system()} {platform.machine()}"
    if "there is no version of" in cause:
        return Choice.NOT_INSTALLABLE, None, f"{name} {version} is not on the package index"
    if "not found in the package registry" in cause:
        return Choice.NOT_INSTALLABLE, None, f"{name} is not on the package index"
    if "no usable wheels" not in cause and "no wheels" not in cause:
        return Choice.NOT_INSTALLABLE, None, cause
    upper = _next_minor(version)
    if upper:
        spec = f"{name}>{version},<{upper}"
        nearest, _ = compiler.compile([spec], no_deps=True, wheels_only=True, lowest=True)
        if nearest and name in nearest:
            return (
                Choice.NEAREST,
                nearest[name],
                f"{name} {version} has no wheel for {here}; {nearest[name]} is the nearest "
                "later release of the same series that has one",
            )
    any_wheel, _ = compiler.compile([name], no_deps=True, wheels_only=True)
    if any_wheel is None:
        return (
            Choice.FROM_SOURCE,
            version,
            f"{name} publishes no wheels: {version} is built from its source distribution",
        )
    series = f" (nor does any later {Version(version).major}.{Version(version).minor}.x)"
    return (
        Choice.NOT_INSTALLABLE,
        None,
        f"{name} {version} has no wheel for {here}{series if upper else ''}; building it from "
        "source needs a compiler and the build tools of its time, and is not attempted",
    )


def compute_plan(inputs: PlanInputs, env: dict[str, str] | None = None) -> EnvironmentPlan:
    """The plan for `inputs`; raises RequirementsRefusedError for refused lines (nothing is
    resolved then) and PackageIndexUnreachableError when uv cannot reach the index."""
    source, lines = requirement_lines(inputs)
    asked = check_lines(lines)
    env = env or uv_environment()
    python = choose_python(inputs, env)
    compiler = _Compiler(python.path, env)
    notes = _notes(inputs, source, asked)
    blockers: list[str] = []
    if not asked:
        blockers.append(
            "The model lists no requirements (no python_env.yaml, conda.yaml pip section or "
            "requirements.txt): re-log it with MLflow, which writes them, or use --env app."
        )
    # The resolution of the lines as asked starts now, next to the pin checks below: in the
    # usual case (every exact pin has a wheel here, nothing capped) those are the final lines,
    # and the checks then cost no time of their own (a `uv pip compile` waits on the index more
    # than on the CPU). Otherwise its answer is not used, and the final lines are resolved.
    as_asked = [requirement.line for requirement in asked]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-resolve")
    ahead = pool.submit(compiler.compile, as_asked) if asked else None
    pool.shutdown(wait=False)  # takes no more work; the resolution started runs to its end
    decided: dict[str, tuple[Choice, str | None, str]] = {}
    pinned = [a for a in asked if a.exact_version]
    if pinned:
        all_pins = [f"{a.name}=={a.exact_version}" for a in pinned]
        together, _ = compiler.compile(all_pins, no_deps=True, wheels_only=True)
        for requirement in pinned:
            if together is not None and requirement.name in together:
                decided[requirement.name] = (Choice.EXACT, requirement.exact_version, "exact pin")
            elif together is None:
                decided[requirement.name] = _check_pin(requirement, compiler, python)
    final_lines = []
    for requirement in asked:
        choice = decided.get(requirement.name)
        marker = f"; {requirement.requirement.marker}" if requirement.requirement.marker else ""
        if choice is None or choice[0] in (Choice.EXACT, Choice.FROM_SOURCE):
            final_lines.append(requirement.line)
        elif choice[0] is Choice.NEAREST:
            final_lines.append(f"{requirement.name}=={choice[1]}{marker}")
        elif requirement.name in inputs.loader_distributions:
            where = "on this interpreter" if "no wheel for" in choice[2] else "here"
            blockers.append(
                f"{requirement.line} cannot be installed {where}: {choice[2]}. The model's "
                "loader imports it."
            )
        else:
            # The nearest later release with a wheel, rather than the newest: closest to what
            # the model was saved with (numpy 1.21.6 -> 1.23.2, not 2.x, whose ABI differs).
            later, _ = compiler.compile(
                [f"{requirement.name}>{requirement.exact_version}"],
                no_deps=True,
                wheels_only=True,
                lowest=True,
            )
            version = (later or {}).get(requirement.name)
            instead = (
                f"the nearest later release with a wheel, {version}, is installed instead"
                if version
                else "the version that fits the others is installed instead"
            )
            decided[requirement.name] = (
                Choice.RELAXED,
                version,
                f"{choice[2]}; the model's loader does not import it, so {instead}",
            )
            pinned_line = f"{requirement.name}=={version}" if version else requirement.name
            final_lines.append(pinned_line + marker)
    locked: dict[str, str] = {}
    numpy_cap = _numpy_cap(asked, decided, inputs, compiler)
    if numpy_cap and not blockers:
        capped, _ = compiler.compile([*final_lines, "numpy<2"])
        if capped is not None:
            final_lines.append("numpy<2")
            notes.append(numpy_cap[1])
    setuptools = _setuptools_added(asked, decided, inputs, compiler, numpy_cap)
    if setuptools and not blockers:
        added, _ = compiler.compile([*final_lines, SETUPTOOLS_WITH_PKG_RESOURCES])
        if added is not None:
            final_lines.append(SETUPTOOLS_WITH_PKG_RESOURCES)
            notes.append(setuptools)
    if not blockers:
        if ahead is not None and final_lines == as_asked:
            resolved, cause = ahead.result()
        else:
            resolved, cause = compiler.compile(final_lines)
        if resolved is None:
            blockers.append(f"The requirements cannot be installed together here: {cause}")
        else:
            locked = resolved
    planned = [_planned(a, decided.get(a.name), locked, inputs, bool(blockers)) for a in asked]
    return EnvironmentPlan(
        model_uri=inputs.model_uri,
        inputs_digest=inputs.digest(),
        source=source,
        python=python,
        requirements=planned,
        locked=sorted(f"{k}=={v}" for k, v in locked.items()),
        blockers=blockers,
        notes=notes,
        index=index_settings().describe(),
    )


def _released_before(
    asked: list[AskedRequirement],
    decided: dict[str, tuple[Choice, str | None, str]],
    inputs: PlanInputs,
    compiler: _Compiler,
    moment: str,
) -> str | None:
    """"name version" of the first framework the loader imports (not mlflow or cloudpickle)
    whose chosen release was uploaded before `moment`, or None. The resolver cannot know what
    a package's metadata does not say; its release date does."""
    for requirement in asked:
        choice = decided.get(requirement.name)
        if requirement.name in ("mlflow", "cloudpickle") or choice is None or not choice[1]:
            continue
        if requirement.name not in inputs.loader_distributions:
            continue
        line = f"{requirement.name}=={choice[1]}"
        older, _ = compiler.compile(
            [line], no_deps=True, wheels_only=True, uploaded_before=moment
        )
        if older:
            return f"{requirement.name} {choice[1]}"
    return None


def _numpy_cap(
    asked: list[AskedRequirement],
    decided: dict[str, tuple[Choice, str | None, str]],
    inputs: PlanInputs,
    compiler: _Compiler,
) -> tuple[str, str] | None:
    """The framework released before NumPy 2 and why numpy must stay below 2, or None. NumPy 2
    changed its binary interface: a compiled package released before it (scikit-learn 1.1.3,
    say) fails to import next to NumPy 2, and its metadata does not say so (no upper bound).
    Only when the model itself does not ask for a numpy version."""
    if any(a.name == "numpy" for a in asked):
        return None
    older = _released_before(asked, decided, inputs, compiler, NUMPY_2_RELEASED)
    if older is None:
        return None
    return older, (
        f"{older} was released before NumPy 2, whose binary interface differs; numpy is kept "
        "below 2 so that it imports."
    )


def _setuptools_added(
    asked: list[AskedRequirement],
    decided: dict[str, tuple[Choice, str | None, str]],
    inputs: PlanInputs,
    compiler: _Compiler,
    numpy_cap: tuple[str, str] | None,
) -> str | None:
    """Why setuptools<82 is added, or None. Frameworks of before setuptools 82 may import
    pkg_resources, which only setuptools provides and 82 removed (XGBoost 1.4 imports it as it
    loads). The pip and conda environments of their time always had setuptools; a uv virtualenv
    has none, so such a model built "ready" and then failed to load. Only when the model itself
    does not ask for a setuptools version."""
    if any(a.name == "setuptools" for a in asked):
        return None
    # Released before NumPy 2 is released before setuptools 82 as well: no second question.
    older = numpy_cap[0] if numpy_cap else None
    older = older or _released_before(asked, decided, inputs, compiler, SETUPTOOLS_82_RELEASED)
    if older is None:
        return None
    return (
        f"{older} was released before setuptools 82 removed pkg_resources, which packages of "
        f"its time may import; a new virtualenv has no setuptools, so "
        f"{SETUPTOOLS_WITH_PKG_RESOURCES} is added, as pip and conda environments then had it."
    )


def _planned(
    asked: AskedRequirement,
    decided: tuple[Choice, str | None, str] | None,
    locked: dict[str, str],
    inputs: PlanInputs,
    blocked: bool,
) -> PlannedRequirement:
    chosen = locked.get(asked.name)
    if decided is not None:
        choice, version, reason = decided
        chosen = chosen or version
        if choice is Choice.RELAXED and chosen and not version:
            reason = f"{reason} ({chosen})"
    elif blocked:
        choice, reason = Choice.RESOLVED, "not resolved: the plan is blocked"
    elif chosen is None:
        choice, reason = Choice.NOT_NEEDED, "its environment marker excludes this machine"
    else:
        spec = str(asked.requirement.specifier)
        choice = Choice.RESOLVED
        reason = f"newest release matching '{spec}'" if spec else "not pinned: newest release"
        reason += " that fits the other requirements"
    if decided is not None and decided[0] is Choice.EXACT and locked and chosen is None:
        choice, reason = Choice.NOT_NEEDED, "its environment marker excludes this machine"
    saved = inputs.saved_with.get(asked.name)
    return PlannedRequirement(
        name=asked.name,
        line=asked.line,
        file=asked.file,
        asked=str(asked.requirement.specifier),
        chosen=chosen,
        choice=choice,
        reason=reason,
        loader_imports=asked.name in inputs.loader_distributions,
        saved_with=f"{saved[0]} {saved[1]}" if saved else None,
    )


def _notes(inputs: PlanInputs, source: str, asked: list[AskedRequirement]) -> list[str]:
    notes = []
    names = {a.name: a for a in asked}
    for distribution, (field_name, version) in sorted(inputs.saved_with.items()):
        requirement = names.get(distribution)
        pin = requirement.exact_version if requirement else None
        if pin and pin != version:
            notes.append(
                f"MLmodel says the model was saved with {distribution} {version} ({field_name}), "
                f"but {requirement.file} pins {pin}: {pin} is what gets installed."
            )
        elif requirement is None:
            notes.append(
                f"MLmodel says the model was saved with {distribution} {version} ({field_name}), "
                "but the requirements do not ask for it."
            )
    conda = conda_pip_lines(inputs.conda_yaml)
    if conda is not None and source != "conda.yaml":
        others = sorted({line.split("=")[0].split("<")[0].split(">")[0].strip() for line in conda}
                        - set(names) - {""})
        if others:
            notes.append(
                f"conda.yaml also lists {', '.join(others)}; the plan follows {source}, as "
                "MLflow does for a virtualenv, so those are not installed."
            )
    build = python_env(inputs).get("build_dependencies")
    if isinstance(build, list) and build:
        notes.append(
            f"python_env.yaml's build dependencies ({', '.join(map(str, build))}) are tools "
            "for pip and virtualenv; uv builds the environment without them."
        )
    return notes


# --- the plan cache --------------------------------------------------------------------------


def plans_folder(environments_root: Path) -> Path:
    return environments_root / "plans"


def cached_plan(environments_root: Path, inputs: PlanInputs) -> EnvironmentPlan | None:
    path = plans_folder(environments_root) / f"{_cache_name(inputs)}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("format") != PLAN_FORMAT:
        return None
    return replace(EnvironmentPlan.from_dict(data["plan"]), model_uri=inputs.model_uri)


def plan_environment(
    inputs: PlanInputs, environments_root: Path, refresh: bool = False
) -> EnvironmentPlan:
    """The plan for `inputs`, computed once and then read back: an unpinned requirement stays
    at the version first chosen, so the same model always gets the same environment, until
    `refresh`. A blocked plan is not kept (the index may have what is missing tomorrow)."""
    if not refresh:
        plan = cached_plan(environments_root, inputs)
        if plan is not None:
            return plan
    plan = compute_plan(inputs)
    if plan.key is not None:
        folder = plans_folder(environments_root)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_cache_name(inputs)}.json"
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"format": PLAN_FORMAT, "plan": plan.to_dict()}))
        os.replace(temporary, path)
    return plan


def _cache_name(inputs: PlanInputs) -> str:
    # The app's interpreter is part of what a plan depends on (it is the fallback Python).
    text = inputs.digest() + "|" + "|".join(app_python())
    return hashlib.sha256(text.encode()).hexdigest()[:24]
