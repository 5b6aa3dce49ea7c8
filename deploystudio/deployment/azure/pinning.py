"""Azure fidelity (issue 19, part 7): the environment exported with a deployment pins what ran
here. When the model ran in its own environment (built with uv by `environments`), the exported
conda file's pip section lists exactly the versions installed in it (its `requirements.lock`,
which `uv pip sync` installed, no more, no less), and its Python is the one that environment
used, so Azure builds what was tested locally rather than re-resolving loose pins."""

from __future__ import annotations

from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deploystudio.environments import Environment, PlanInputs, lookup

LOCK_FILE = "requirements.lock"


def environment_for(model_path: Path | None, home: Path) -> Environment | None:
    """The ready model environment built for the model in `model_path`, or None (never built, or
    a model referenced in Azure, which has no local folder)."""
    if model_path is None or not (model_path / "MLmodel").is_file():
        return None
    return lookup(PlanInputs.from_folder(model_path), home)


def installed_pins(environment: Environment) -> list[str]:
    """`name==version` of every package installed in the environment."""
    text = (environment.root / LOCK_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _name(line: str) -> str | None:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return None


def pin_conda(conda_text: str, environment: Environment) -> str:
    """`conda_text` with its Python set to the environment's and its pip section replaced by the
    environment's exact versions; pip lines for packages the environment lacks (the inference
    server a scoring script needs on Azure, say) are kept after them as they were."""
    document = yaml.safe_load(conda_text) or {}
    pins = installed_pins(environment)
    pinned_names = {_name(pin) for pin in pins}
    dependencies = []
    kept: list[str] = []
    for item in document.get("dependencies") or []:
        if isinstance(item, dict) and "pip" in item:
            kept += [p for p in item["pip"] or [] if _name(str(p)) not in pinned_names]
        elif isinstance(item, str) and item.replace(" ", "").split("=")[0] == "python":
            continue
        else:
            dependencies.append(item)
    python = f"python={environment.python_version}"
    rest = [d for d in dependencies if d != "pip"]
    document["dependencies"] = [python, "pip", *rest, {"pip": [*pins, *kept]}]
    header = (
        f"# Pinned by Deploy Studio to the model environment {environment.key}, where the model "
        "ran locally:\n# the exact versions installed there, and its Python.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
