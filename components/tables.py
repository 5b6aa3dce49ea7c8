"""Registry records as DataFrames ready for st.dataframe."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from deploystudio.customization.bundles import SCORING_BUNDLE_TAG
from deploystudio.customization.wrap_registration import WRAPPED_FROM_TAG
from deploystudio.inspection import format_bytes
from deploystudio.model_files import ArtifactEntry
from deploystudio.overview import ServedVersion
from deploystudio.registry import ModelSummary, VersionSummary
from deploystudio.times import format_time


def _aliases_text(aliases: dict[str, str]) -> str:
    return ", ".join(f"{alias} → v{version}" for alias, version in sorted(aliases.items()))


def models_frame(models: list[ModelSummary]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [m.name for m in models],
            "description": [m.description for m in models],
            "latest version": [m.latest_version or "" for m in models],
            "aliases": [_aliases_text(m.aliases) for m in models],
            "tags": [", ".join(f"{k}={v}" for k, v in sorted(m.tags.items())) for m in models],
            "last updated": [format_time(m.last_updated) for m in models],
        }
    )


def versions_frame(
    versions: list[VersionSummary], served: Sequence[ServedVersion] = ()
) -> pd.DataFrame:
    """One row per version with its lineage: the version it wraps, its scoring bundle and the
    endpoint deployments serving it (by number or by one of its aliases)."""

    def serving(v: VersionSummary) -> str:
        return ", ".join(
            f"{s.endpoint}/{s.deployment}"
            for s in served
            if s.serves(v.name, v.version, v.aliases)
        )

    return pd.DataFrame(
        {
            "version": [int(v.version) for v in versions],
            "aliases": [", ".join(v.aliases) for v in versions],
            "wraps": [v.tags.get(WRAPPED_FROM_TAG, "") for v in versions],
            "scoring bundle": [v.tags.get(SCORING_BUNDLE_TAG, "") for v in versions],
            "served by": [serving(v) for v in versions],
            "stage": [v.stage or "" for v in versions],
            "status": [v.status for v in versions],
            "source run": [v.run_id or "" for v in versions],
            "created": [format_time(v.created) for v in versions],
        }
    )


def artifacts_frame(entries: list[ArtifactEntry]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [e.path + ("/" if e.is_dir else "") for e in entries],
            "size": ["" if e.size is None else format_bytes(e.size) for e in entries],
        }
    )
