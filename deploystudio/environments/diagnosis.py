"""Why a model failed to load or serve, when the cause is version skew (issue 19, part 5).

A model saved with scikit-learn 1.1.3 and loaded with 1.9 fails deep in the unpickler: "No
module named 'sklearn.ensemble._gb_losses'", "Can't get attribute '_RemainderColsList'", or, for
compiled code, "numpy.dtype size changed" or an undefined symbol. The message alone blames the
model; the cause is the environment. When such an error names a package whose saved and
installed versions differ, the message says which and offers the model's own environment.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.utils import canonicalize_name

from deploystudio.environment import installed_version
from deploystudio.environments.sources import PlanInputs, check_lines, requirement_lines
from deploystudio.errors import DeployStudioError, RequirementsRefusedError

# Errors of unpickling or of loading compiled code; group 1, when there, names a module.
_SKEW_PATTERNS = (
    re.compile(r"No module named '([\w.]+)'"),
    re.compile(r"Can't get attribute '[\w.]+' on <module '([\w.]+)'"),
    re.compile(r"cannot import name '\w+' from '([\w.]+)'"),
    re.compile(r"module '([\w.]+)' has no attribute"),
    re.compile(r"(numpy)\.dtype size changed"),
    re.compile(r"compiled (?:using|against) NumPy"),
    re.compile(r"undefined symbol"),
    re.compile(r"_pickle\.UnpicklingError|invalid load key|unsupported pickle protocol"),
    re.compile(r"(?:numpy|pandas|sklearn)\._?core\b"),
    # faulthandler's line for a native crash (SIGABRT, SIGSEGV...) in a library's compiled code
    re.compile(r"Fatal Python error: (?:Aborted|Segmentation fault|Bus error|Illegal instruction)"),
)


def saved_versions(inputs: PlanInputs) -> dict[str, str]:
    """Distribution -> the version the model was saved with: its exact pins, then the versions
    MLmodel records (`sklearn_version`, ...)."""
    versions = {name: version for name, (_, version) in inputs.saved_with.items()}
    try:
        _, lines = requirement_lines(inputs)
        asked = check_lines(lines)
    except RequirementsRefusedError:
        asked = []
    for requirement in asked:
        if requirement.exact_version:
            versions[requirement.name] = requirement.exact_version
    return versions


def skewed(inputs: PlanInputs) -> dict[str, tuple[str, str | None]]:
    """Distribution -> (saved, installed here) for those that differ."""
    found = {}
    for name, saved in saved_versions(inputs).items():
        here = installed_version(name)
        if here != saved:
            found[name] = (saved, here)
    return found


def _distribution_of(module: str) -> str:
    top = module.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top)
    # A module of a package not installed here ("No module named 'xgboost'") maps to nothing:
    # its top-level name is most often its distribution's (xgboost, lightgbm); a wrong guess
    # matches no saved version and the caller lists every difference instead.
    return canonicalize_name(names[0] if names else top)


def skew_advice(message: str, inputs: PlanInputs) -> str | None:
    """What to add to a load or serve error that looks like version skew, or None."""
    differ = skewed(inputs)
    if not differ:
        return None
    named: str | None = None
    matched = False
    for pattern in _SKEW_PATTERNS:
        found = pattern.search(message)
        if found:
            matched = True
            if found.groups() and found.group(1):
                named = _distribution_of(found.group(1))
            break
    if not matched:
        return None
    if named is not None and named not in differ:
        # The module named belongs to a package saved with the version installed here, but a
        # numpy or pandas skew underneath may still be the cause: say all that differ.
        named = None
    shown = {named: differ[named]} if named else differ
    listed = "; ".join(
        f"{name} {saved} when saved, {here or 'not installed'} here"
        for name, (saved, here) in sorted(shown.items())
    )
    return (
        f"This looks like version skew: {listed}. Run the model in its own environment "
        "(--env model, or \"Model's own\" on the Predict page), which installs the versions "
        "it was saved with."
    )


def explained(
    error: DeployStudioError, in_app_environment: bool, model_dir: Path
) -> DeployStudioError:
    """`error` with the skew advice added when the model ran in the app's environment and the
    error looks like skew; else `error` itself. Same type, so callers handle it as before."""
    if not in_app_environment:
        return error
    try:
        advice = skew_advice(str(error), PlanInputs.from_folder(model_dir))
    except DeployStudioError:  # no MLmodel: nothing to compare
        return error
    if advice is None:
        return error
    try:
        return type(error)(f"{error} {advice}")
    except TypeError:  # a subclass with another constructor
        return DeployStudioError(f"{error} {advice}")
