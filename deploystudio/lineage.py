"""A registered version's lineage: the model it wraps and the versions wrapping it, its scoring
bundles, the endpoint deployments serving it and the batch jobs that used it.

Pure over what the caller read (the registry's wrappers, saved bundles, deployments, job
records), so Inspect, the CLI and tests share one answer. Which deployment serves which
version is `overview.served_version`, the same rule Browse's "served by" column uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from deploystudio.customization.bundles import SCORING_BUNDLE_TAG, Bundle
from deploystudio.customization.wrap_registration import WRAPPED_FROM_TAG, WRAPPER_KIND_TAG
from deploystudio.deployment.base import Deployment
from deploystudio.deployment.batch.records import BatchJob
from deploystudio.errors import DeployStudioError
from deploystudio.model_uri import ModelReference, parse_model_uri
from deploystudio.overview import ServedVersion, served_version
from deploystudio.registry import VersionSummary


def reference_to(uri: str, version: VersionSummary) -> str | None:
    """How `uri` names `version`: "" by its number, "@alias" by one of its aliases (as they
    stand now), None when it names something else (or is no registered model URI)."""
    try:
        reference = parse_model_uri(uri)
    except DeployStudioError:
        return None
    if not reference.is_registered or reference.name != version.name:
        return None
    if reference.version is not None:
        return "" if reference.version == version.version else None
    return f"@{reference.alias}" if reference.alias in version.aliases else None


@dataclass(frozen=True)
class BundleUse:
    bundle: Bundle
    # The version's tag names it (Customize attached it); else it was written for the version.
    attached: bool


@dataclass(frozen=True)
class JobUse:
    job: BatchJob
    via: str  # "" by number, "@alias" by an alias


@dataclass(frozen=True)
class VersionLineage:
    # What this version wraps (the source URI its lineage tag keeps) and how.
    wraps: ModelReference | None
    wraps_uri: str | None
    wrapper_kind: str | None
    wrapped_by: list[VersionSummary]
    bundles: list[BundleUse]
    # Attached in the registry but not saved here any more.
    missing_bundle: str | None
    serving: list[ServedVersion]
    jobs: list[JobUse]

    @property
    def empty(self) -> bool:
        return not (
            self.wraps_uri or self.wrapped_by or self.bundles or self.serving or self.jobs
        )


def version_lineage(
    version: VersionSummary,
    *,
    wrappers: Iterable[VersionSummary] = (),
    bundles: Iterable[Bundle] = (),
    deployments: Iterable[Deployment] = (),
    jobs: Iterable[BatchJob] = (),
) -> VersionLineage:
    """`version`'s lineage from candidate records: `wrappers` are versions whose lineage tag
    may name it (Registry.wrappers_of), the rest every saved bundle, deployment and job."""
    wraps_uri = version.tags.get(WRAPPED_FROM_TAG)
    wraps = None
    if wraps_uri:
        try:
            wraps = parse_model_uri(wraps_uri)
        except DeployStudioError:  # a folder or URI no longer accepted: shown as text
            wraps = None
    attached = version.tags.get(SCORING_BUNDLE_TAG)
    uses = []
    for bundle in bundles:
        is_attached = bundle.label == attached
        if is_attached or reference_to(bundle.model_uri, version) is not None:
            uses.append(BundleUse(bundle, is_attached))
    serving = []
    for deployment in deployments:
        served = served_version(deployment)
        if served is not None and served.serves(version.name, version.version, version.aliases):
            serving.append(served)
    return VersionLineage(
        wraps=wraps,
        wraps_uri=wraps_uri,
        wrapper_kind=version.tags.get(WRAPPER_KIND_TAG),
        wrapped_by=[
            w
            for w in wrappers
            if reference_to(w.tags.get(WRAPPED_FROM_TAG, ""), version) is not None
        ],
        bundles=uses,
        missing_bundle=attached if attached and not any(u.attached for u in uses) else None,
        serving=serving,
        jobs=[
            JobUse(job, via)
            for job in jobs
            if (via := reference_to(job.model_uri, version)) is not None
        ],
    )
