"""Which environment runs a model: the app's own, or the model's (built with uv on first use).

    chosen = choose(EnvMode.AUTO, model_dir, settings.home, progress=print)
    chosen.python        # the interpreter to start model code with
    chosen.reason        # what was chosen and why, to show next to the result

`auto` (the default) keeps the app's environment when it already satisfies every requirement
the model's loader imports (mlflow, the flavor's framework, cloudpickle), since that starts in
no time and needs no index; otherwise it uses the model's own. `model` always uses the model's,
`app` always the app's (today's behaviour, with whatever skew that brings).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from deploystudio.environment import installed_version
from deploystudio.environments.build import Environment, ensure, environments_root
from deploystudio.environments.plan import plan_environment
from deploystudio.environments.sources import PlanInputs, check_lines, requirement_lines
from deploystudio.errors import DeployStudioError, RequirementsRefusedError

Progress = Callable[[str], None]


class EnvMode(StrEnum):
    AUTO = "auto"
    MODEL = "model"
    APP = "app"


ENV_MODES = tuple(mode.value for mode in EnvMode)


class EnvModeError(DeployStudioError):
    pass


def parse_mode(text: str | None) -> EnvMode:
    try:
        return EnvMode((text or EnvMode.AUTO.value).strip().lower())
    except ValueError:
        raise EnvModeError(
            f"Unknown environment choice '{text}': use one of {', '.join(ENV_MODES)}."
        ) from None


@dataclass(frozen=True)
class Unmet:
    """A requirement of the model's loader that the app's environment does not satisfy."""

    requirement: str  # as the model asks it, e.g. "scikit-learn==1.1.3"
    installed: str | None  # the app's version, None when not installed here

    def describe(self) -> str:
        here = f"{self.installed} here" if self.installed else "not installed here"
        return f"{self.requirement} ({here})"


@dataclass(frozen=True)
class Chosen:
    """The environment a model runs in. `environment` is None for the app's own."""

    mode: EnvMode
    environment: Environment | None
    python: Path
    reason: str

    @property
    def is_model_environment(self) -> bool:
        return self.environment is not None

    @property
    def python_for_worker(self) -> Path | None:
        """The interpreter a worker starts with: None for the app's own."""
        return self.environment.python if self.environment is not None else None

    @property
    def read_roots(self) -> list[Path]:
        """What a sandboxed process must read to run in this environment (the app's own is
        always readable)."""
        return [self.environment.root] if self.environment is not None else []

    @property
    def label(self) -> str:
        if self.environment is None:
            return "the app's environment"
        return f"the model's environment {self.environment.key}"


def unmet_requirements(inputs: PlanInputs) -> list[Unmet]:
    """The loader's requirements (with a version specifier) the app's environment does not
    satisfy. Raises RequirementsRefusedError for refused requirement lines."""
    _, lines = requirement_lines(inputs)
    unmet: list[Unmet] = []
    for asked in check_lines(lines):
        requirement = asked.requirement
        if asked.name not in inputs.loader_distributions:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = installed_version(asked.name)
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(Unmet(asked.line, installed))
    return unmet


def choose(
    mode: EnvMode | str,
    model_dir: Path,
    home: Path,
    progress: Progress | None = None,
    inputs: PlanInputs | None = None,
    extra_requirements: Sequence[str] = (),
) -> Chosen:
    """The environment to run the model in `model_dir`, built if `model` (or `auto` with
    unmet requirements) needs one that is not there yet. Raises what the build raises
    (EnvironmentBlockedError, EnvironmentBuildError, PackageIndexUnreachableError,
    RequirementsRefusedError), each saying to use `--env app` instead. `extra_requirements`:
    what the runtime needs in the model's environment besides the model's own (see `ensure`);
    the app's environment has them already."""
    mode = parse_mode(mode) if isinstance(mode, str) else mode
    app = Path(sys.executable)
    if mode is EnvMode.APP:
        return Chosen(mode, None, app, "The app's environment, as asked (--env app).")
    inputs = inputs or PlanInputs.from_folder(model_dir)
    if mode is EnvMode.AUTO:
        try:
            unmet = unmet_requirements(inputs)
        except RequirementsRefusedError as exc:
            raise RequirementsRefusedError(
                f"{exc} Run it in the app's environment with --env app."
            ) from None
        if not unmet:
            return Chosen(
                mode,
                None,
                app,
                "The app's environment: it already has every version the model's loader "
                f"asks for ({', '.join(inputs.loader_distributions)}).",
            )
        why = "; ".join(item.describe() for item in unmet)
        reason = f"The model's own environment, since the app's differs: {why}."
    else:
        reason = "The model's own environment, as asked (--env model)."
    plan = plan_environment(inputs, environments_root(home))
    environment = ensure(plan, home, progress=progress, extra_requirements=extra_requirements)
    built = "built now" if environment.built_now else "built before"
    return Chosen(
        mode,
        environment,
        environment.python,
        f"{reason} Environment {environment.key} ({built}, Python "
        f"{environment.python_version}, {environment.packages} packages).",
    )
