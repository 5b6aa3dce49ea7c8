"""A version's lineage (deploystudio.lineage) over records as the stores return them, and the
registry search that finds a version's wrappers, on a real SQLite registry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploystudio.customization.bundles import SCORING_BUNDLE_TAG, Bundle
from deploystudio.customization.wrap_registration import WRAPPED_FROM_TAG, WRAPPER_KIND_TAG
from deploystudio.deployment.base import Deployment, DeploymentState, Runtime
from deploystudio.deployment.batch.records import BatchJob, JobState
from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.lineage import reference_to, version_lineage
from deploystudio.registry import Registry, VersionSummary

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def version(name: str, number: str, aliases=(), **tags: str) -> VersionSummary:
    return VersionSummary(
        name, number, tuple(aliases), None, "READY", "file:///m", None, NOW, NOW, "", None, tags
    )


def deployment(endpoint: str, name: str, uri: str) -> Deployment:
    return Deployment(
        endpoint, name, uri, Runtime.AZUREML, None, DeploymentState.READY, None, None, None, None,
        None, NOW, NOW,
    )  # fmt: skip


def bundle(name: str, number: int, uri: str, validated: bool = True) -> Bundle:
    return Bundle(name, number, uri, "online", "base", NOW, "", validated, Path("/nowhere"))


def job(job_id: str, uri: str) -> BatchJob:
    return BatchJob(
        job_id, JobState.COMPLETED, None, uri, Path("/m"), None, None, Path("/in"), Path("/out"),
        Path("/work"), BatchSettings(), "ana", None, False, 1, 1, 0, 3, NOW, NOW, NOW,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/iris/2", ""),
        ("models:/iris@champion", "@champion"),
        ("models:/iris/1", None),
        ("models:/iris@old", None),
        ("models:/other/2", None),
        ("runs:/abc123/model", None),
        ("not a uri at all", None),
    ],
)
def test_a_uri_names_a_version_by_number_or_by_one_of_its_aliases(uri, expected):
    assert reference_to(uri, version("iris", "2", aliases=["champion"])) == expected


def test_lineage_gathers_wrapping_bundles_deployments_and_jobs():
    iris2 = version(
        "iris", "2", aliases=["champion"],
        **{WRAPPED_FROM_TAG: "models:/iris-raw/7", WRAPPER_KIND_TAG: "probabilities",
           SCORING_BUNDLE_TAG: "score-iris:2"},
    )  # fmt: skip
    wrappers = [
        version("iris-probs", "1", **{WRAPPED_FROM_TAG: "models:/iris/2"}),
        version("iris-probs", "2", **{WRAPPED_FROM_TAG: "models:/iris@champion"}),
        # Found by the registry's prefix search, but wraps another version.
        version("iris-probs", "3", **{WRAPPED_FROM_TAG: "models:/iris/1"}),
        version("iris-2x", "1", **{WRAPPED_FROM_TAG: "models:/iris-2x-source/2"}),
    ]
    bundles = [
        bundle("score-iris", 2, "models:/iris/1"),  # written for v1, attached to v2
        bundle("score-iris", 1, "models:/iris/2", validated=False),
        bundle("other", 1, "models:/wine/2"),
    ]
    deployments = [
        deployment("ep", "blue", "models:/iris/2"),
        deployment("ep", "green", "models:/iris@champion"),
        deployment("ep", "red", "models:/iris/1"),
        deployment("ep2", "blue", "runs:/abc/model"),
    ]
    jobs = [job("j1", "models:/iris/2"), job("j2", "models:/iris@champion"), job("j3", "/tmp/m")]

    lineage = version_lineage(
        iris2, wrappers=wrappers, bundles=bundles, deployments=deployments, jobs=jobs
    )

    assert lineage.wraps is not None and (lineage.wraps.name, lineage.wraps.version) == (
        "iris-raw",
        "7",
    )
    assert lineage.wrapper_kind == "probabilities"
    assert [(w.name, w.version) for w in lineage.wrapped_by] == [
        ("iris-probs", "1"),
        ("iris-probs", "2"),
    ]
    assert [(u.bundle.label, u.attached) for u in lineage.bundles] == [
        ("score-iris:2", True),
        ("score-iris:1", False),
    ]
    assert lineage.missing_bundle is None
    assert [(s.endpoint, s.deployment, s.alias) for s in lineage.serving] == [
        ("ep", "blue", None),
        ("ep", "green", "champion"),
    ]
    assert [(u.job.id, u.via) for u in lineage.jobs] == [("j1", ""), ("j2", "@champion")]
    assert not lineage.empty


def test_an_attached_bundle_that_is_not_saved_is_said_and_a_bare_version_is_empty():
    lonely = version("wine", "1", **{SCORING_BUNDLE_TAG: "gone:3"})
    lineage = version_lineage(lonely, bundles=[bundle("other", 1, "models:/iris/2")])
    assert lineage.missing_bundle == "gone:3"
    assert lineage.empty
    assert version_lineage(version("wine", "1")).empty


def test_the_registry_finds_versions_whose_tag_starts_with_a_prefix(tmp_path):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry(uri, uri)
    client = registry.client
    for name in ("iris", "iris-probs", "iris_x", "wine"):
        client.create_registered_model(name)
    client.create_model_version("iris", "file:///tmp/m")
    for name, source in (("iris-probs", "iris/1"), ("iris_x", "irisx/1"), ("wine", "wine/1")):
        client.create_model_version(
            name, f"file:///tmp/{name}", tags={WRAPPED_FROM_TAG: f"models:/{source}"}
        )

    found = registry.versions_tagged(WRAPPED_FROM_TAG, "models:/iris")
    # A prefix search: "irisx" matches too, which is why lineage checks each value.
    assert sorted((v.name, v.version) for v in found) == [("iris-probs", "1"), ("iris_x", "1")]
    lineage = version_lineage(version("iris", "1"), wrappers=found)
    assert [(w.name, w.version) for w in lineage.wrapped_by] == [("iris-probs", "1")]
