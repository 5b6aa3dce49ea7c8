"""A model's plan inputs, from any model URI: a local folder directly, others through the
inspection (which fetches the few small files and never the weights)."""

from __future__ import annotations

from pathlib import Path

from deploystudio.config import Settings
from deploystudio.environments.sources import PlanInputs
from deploystudio.errors import RequirementsRefusedError
from deploystudio.inspection import ModelInspection, inspect_model
from deploystudio.model_uri import ModelUriKind, parse_model_uri


def inputs_from_inspection(inspection: ModelInspection) -> PlanInputs:
    environment = inspection.environment
    if environment.refused:
        reasons = "; ".join(f"{name}: {why}" for name, why in environment.refused.items())
        raise RequirementsRefusedError(
            f"The model's environment files were not read ({reasons}), so nothing is "
            "installed for it. Put the files themselves in the model, or use --env app."
        )
    texts = {
        "requirements.txt": environment.requirements_txt,
        "conda.yaml": environment.conda_yaml,
        "python_env.yaml": environment.python_env_yaml,
    }
    flavors = {flavor.name: dict(flavor.details) for flavor in inspection.flavors}
    return PlanInputs.from_texts(inspection.resolved_uri, texts, flavors)


def inputs_for_model(
    uri: str, settings: Settings, allowed_local_roots: tuple[Path, ...] | None = None
) -> PlanInputs:
    """`allowed_local_roots` as for `inspect_model`: pages pass the configured roots, the CLI
    None (its user may open any folder)."""
    reference = parse_model_uri(uri)
    if reference.kind is ModelUriKind.LOCAL_FOLDER and allowed_local_roots is None:
        return PlanInputs.from_folder(reference.local_path, model_uri=str(reference.local_path))
    return inputs_from_inspection(inspect_model(uri, settings, None, allowed_local_roots))
