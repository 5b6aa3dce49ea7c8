"""Adaptive batching of a local deployment: its two settings and which models qualify.

A deployment with `max_batch_size` > 1 has its endpoint's front gather concurrent requests that
carry the same columns and params into one request to the model server, and split the answer
back by rows (deployment/local/front_batching.py does it). Only a model that answers one
prediction per input row qualifies: its signature must say so, since the front cannot guess.
Azure ML managed online deployments have no such setting; the Azure export writes nothing for
it and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploystudio.checks import Check, CheckStatus
from deploystudio.errors import DeploymentConfigError

MAX_BATCH_SIZE_SETTING = "max_batch_size"
MAX_WAIT_MS_SETTING = "max_wait_ms"
# Rows of 1-row requests gathered at most; far above what helps a small model, and a bound on
# what one failed batch sends again one by one.
MAX_BATCH_SIZE = 256
# A lone request waits at most this long for companions (Triton's max_queue_delay, in ms).
MAX_WAIT_MS = 1_000
CHECK_NAME = "Adaptive batching"
AZURE_NOTE = (
    "Adaptive batching (max_batch_size, max_wait_ms) is a Deploy Studio setting of local "
    "endpoints: Azure ML managed online deployments have no such setting, so the export writes "
    "nothing for it."
)


@dataclass(frozen=True)
class BatchSettings:
    """`max_batch_size` 1 means off. `max_wait_ms` is how long a request waits for others
    while the server is free (0: it goes at once; requests gather while the server is busy)."""

    max_batch_size: int = 1
    max_wait_ms: int = 0

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1

    def as_settings(self) -> dict[str, int]:
        """The deployment settings that store these (none when off)."""
        if not self.enabled:
            return {}
        return {MAX_BATCH_SIZE_SETTING: self.max_batch_size, MAX_WAIT_MS_SETTING: self.max_wait_ms}


NO_BATCHING = BatchSettings()


def batch_settings(settings: Mapping[str, Any]) -> BatchSettings:
    """The batching settings of a deployment's settings; DeploymentConfigError when a value is
    not a whole number in range."""
    size = _whole(settings, MAX_BATCH_SIZE_SETTING, 1, 1, MAX_BATCH_SIZE)
    wait = _whole(settings, MAX_WAIT_MS_SETTING, 0, 0, MAX_WAIT_MS)
    return BatchSettings(size, wait)


def _whole(settings: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DeploymentConfigError(
            f"Setting {name!r} must be a whole number from {low} to {high}, not {value!r}."
        )
    return value


def batching_check(
    input_kind: str | None,
    output_kind: str | None,
    output_shapes: Sequence[Sequence[int] | None] = (),
) -> Check:
    """Whether a model may be batched, from its signature: `input_kind` and `output_kind`
    "columns" or "tensors" (None: no signature, no outputs), the output tensors' shapes."""
    fix = "Re-log the model with signature=infer_signature(X, model.predict(X))."
    if input_kind is None:
        return Check(
            CHECK_NAME,
            CheckStatus.WARN,
            "Not available: without a signature the front cannot know that the model answers "
            "one prediction per input row.",
            fix,
        )
    if input_kind != "columns":
        return Check(
            CHECK_NAME,
            CheckStatus.WARN,
            "Not available: the model takes tensors, and the front batches only tables (rows "
            "that share their columns).",
        )
    if output_kind is None:
        return Check(
            CHECK_NAME,
            CheckStatus.WARN,
            "Not available: the signature has no outputs, so nothing says the model answers one "
            "prediction per input row.",
            fix,
        )
    if output_kind == "tensors":
        shapes = [tuple(shape or ()) for shape in output_shapes]
        if not shapes or any(not shape or shape[0] != -1 for shape in shapes):
            return Check(
                CHECK_NAME,
                CheckStatus.WARN,
                f"Not available: the output shape {shapes} does not grow with the rows, so its "
                "answer cannot be split back by rows.",
            )
    return Check(
        CHECK_NAME,
        CheckStatus.PASS,
        "Available: one prediction per input row, so the front may gather concurrent requests "
        "into one call (set max_batch_size on the deployment).",
    )


def signature_batching_check(signature: Any) -> Check:
    """`batching_check` of an MLflow ModelSignature (or None)."""
    if signature is None or signature.inputs is None:
        return batching_check(None, None)
    outputs = signature.outputs
    kind = "tensors" if signature.inputs.is_tensor_spec() else "columns"
    if outputs is None:
        return batching_check(kind, None)
    if not outputs.is_tensor_spec():
        return batching_check(kind, "columns")
    return batching_check(kind, "tensors", [spec.shape for spec in outputs.inputs])


def model_batching_check(model_path: Path) -> Check:
    """`batching_check` of the MLflow model in `model_path` (its MLmodel file)."""
    # Imported here: MLflow takes seconds to import, and the front imports this module's
    # settings without it.
    from mlflow.models import Model

    return signature_batching_check(Model.load(str(model_path)).signature)


def check_batching(settings: Mapping[str, Any], model_path: Path) -> BatchSettings:
    """The deployment's batching settings, checked against its model: DeploymentConfigError
    when batching is asked for a model that does not answer one row per input row."""
    wanted = batch_settings(settings)
    if not wanted.enabled:
        return wanted
    check = model_batching_check(model_path)
    if check.status is not CheckStatus.PASS:
        raise DeploymentConfigError(
            f"max_batch_size {wanted.max_batch_size} asks for adaptive batching, which this "
            f"model cannot have. {check.detail} Set max_batch_size to 1 (off). {check.fix}".strip()
        )
    return wanted
