"""A batch job's settings, with Azure ML batch deployments' names, defaults and ranges.

The names are those of azure-ai-ml's `ModelBatchDeploymentSettings` and `BatchRetrySettings`, so
the same values export as an Azure batch deployment (`batch_azure`). `chunk_rows` is ours: Azure
reads a whole file per run(); a local job reads files in chunks of about this many rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from deploystudio.errors import BatchSettingsError

MAX_WORKERS = 64
LOGGING_LEVELS = ("debug", "info", "warning", "error", "critical")


class OutputAction(StrEnum):
    """Azure's `output_action`: one predictions file, or only the job summary."""

    APPEND_ROW = "append_row"
    SUMMARY_ONLY = "summary_only"


@dataclass(frozen=True)
class BatchSettings:
    """Azure's defaults (azure-ai-ml 1.35 documents them on `ModelBatchDeploymentSettings`)."""

    mini_batch_size: int = 10  # files per run() call
    max_concurrency_per_instance: int = 1  # worker processes
    output_action: OutputAction = OutputAction.APPEND_ROW
    output_file_name: str = "predictions.csv"
    max_retries: int = 3  # retry_settings.max_retries: for a mini-batch that times out or crashes
    timeout: int = 30  # retry_settings.timeout: seconds per mini-batch
    error_threshold: int = -1  # failed files tolerated; -1 tolerates all
    logging_level: str = "info"
    chunk_rows: int = 100_000

    def __post_init__(self) -> None:
        _whole("mini_batch_size", self.mini_batch_size, 1, 100_000)
        _whole("max_concurrency_per_instance", self.max_concurrency_per_instance, 1, MAX_WORKERS)
        _whole("max_retries", self.max_retries, 0, 100)
        _whole("timeout", self.timeout, 1, 7 * 24 * 3600)
        _whole("error_threshold", self.error_threshold, -1, 2**31 - 1)
        _whole("chunk_rows", self.chunk_rows, 1, 10_000_000)
        try:
            object.__setattr__(self, "output_action", OutputAction(self.output_action))
        except ValueError:
            choices = ", ".join(a.value for a in OutputAction)
            raise BatchSettingsError(
                f"output_action {self.output_action!r} is not one of {choices}."
            ) from None
        name = self.output_file_name
        # The output file is created inside the output folder: a bare file name keeps it there.
        if (
            not isinstance(name, str)
            or not name.strip()
            or "/" in name
            or "\\" in name
            or name in (".", "..")
        ):
            raise BatchSettingsError(
                f"output_file_name {name!r} must be a plain file name such as 'predictions.csv'."
            )
        if self.logging_level not in LOGGING_LEVELS:
            raise BatchSettingsError(
                f"logging_level {self.logging_level!r} is not one of {', '.join(LOGGING_LEVELS)}."
            )

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["output_action"] = self.output_action.value
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BatchSettings:
        """Settings from a mapping; Azure's nested `retry_settings` is accepted too."""
        flat = dict(values)
        retry = flat.pop("retry_settings", None) or {}
        if not isinstance(retry, Mapping):
            raise BatchSettingsError("retry_settings must hold max_retries and timeout.")
        flat.update(retry)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise BatchSettingsError(
                f"Unknown batch setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
            )
        return cls(**flat)


def _whole(name: str, value: Any, low: int, high: int) -> None:
    # bool is an int subclass; True would silently mean 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BatchSettingsError(
            f"{name} must be a whole number from {low} to {high}, not {value!r}."
        )
