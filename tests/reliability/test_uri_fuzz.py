"""Generated model URIs (every scheme, encodings, separators) through what Inspect and Predict
run on them: parse, inspect with the pages' model roots, and the download Predict makes.

Issue 21, finding 1: each URI must end in a DeployStudioError or a model inside the allowed
places (the run's or version's artifacts, the model roots), and the outside folder, a valid
model whose MLmodel holds the sentinel text, must never be read: any copy of it in the data
folder's caches, or a result naming it, fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploystudio.errors import DeployStudioError
from deploystudio.model_uri import ModelUriKind, parse_model_uri
from tests.reliability.conftest import examples
from tests.reliability.figures import FIGURES
from tests.reliability.model_corpus import SENTINEL_TEXT
from tests.reliability.test_paths import snapshot
from tests.uri_traversal import TraversalStudio, inspect, outside_reads, predict_path

SUITE = "model URIs"
SOURCE_MODEL = "fuzz-source"

# Ways to write "..", a separator, and a path segment, as an attacker or a sloppy tool would.
DOTS = (
    "..",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "%252e%252e",
    "%25252e%25252e",
    "\uff0e\uff0e",  # fullwidth full stops: NFKC makes them ".."
    "\u2025",  # two dot leader
    "\u3002\u3002",  # ideographic full stops
    "...",
    "..\x00",
    "..;",
)
SEPARATORS = (
    "/",
    "//",
    "/./",
    "%2f",
    "%2F",
    "%252f",
    "\\",
    "%5c",
    "%255c",
    "\u2215",  # division slash
    "\uff0f",  # fullwidth solidus
    "\u2044",  # fraction slash
    "\x00/",
)
SEGMENTS = (
    "model",
    "MLmodel",
    "outside",
    "no-such-model",
    "link-out",
    "",
    ".",
    "~",
    "a\x00b",
    "%00",
    "C:",
    " ",
    "m-0",
    "@x",
    "?x=1",
    "#x",
    ":",
    "x" * 300,
)
SUFFIXES = ("", "/", "/MLmodel", "\x00", "%00", "?x=..", "#..", "/.")


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> TraversalStudio:
    studio = TraversalStudio(tmp_path_factory.mktemp("uri-fuzz"))
    studio.registry.client.create_registered_model(SOURCE_MODEL)
    return studio


@pytest.fixture(scope="module", autouse=True)
def _measured():
    FIGURES.measured(SUITE, "cases tried", "crashes")


def anchors(studio: TraversalStudio) -> dict[str, Path]:
    """URI prefixes that start inside an allowed place, and the folder each one starts at: a
    climb from there to the outside folder is appended to them."""
    run = studio.run
    root = studio.roots[0]
    artifacts = run.model_folder.parent
    return {
        f"runs:/{run.run_id}/model/": run.model_folder,
        f"runs:/{run.run_id}/": artifacts,
        f"runs:/{run.run_id}/no-such-model/": artifacts,
        f"{root}/": root,
        f"{root}/model/": root / "model",
        f"file://{root}/": root,
        f"file://localhost{root}/": root,
        f"{run.model_folder}/": run.model_folder,
        f"file://{run.model_folder}/": run.model_folder,
    }


OTHER_PREFIXES = ("runs:/", "runs://", "models:/", "models:/m-", "models:/iris/", "file://", "")


@st.composite
def climbs(draw, start: Path, target: Path) -> str:
    """The relative path from `start` to `target`, with its dots and separators re-spelt."""
    parts = os.path.relpath(target, start).split("/")
    dots = draw(st.sampled_from(DOTS))
    separator = draw(st.sampled_from(SEPARATORS))
    return separator.join(dots if part == ".." else part for part in parts)


@st.composite
def junk_paths(draw) -> str:
    parts = draw(st.lists(st.one_of(st.sampled_from(SEGMENTS), st.sampled_from(DOTS)), max_size=6))
    separators = draw(
        st.lists(st.sampled_from(SEPARATORS), min_size=len(parts), max_size=len(parts))
    )
    return "".join(p + s for p, s in zip(parts, separators, strict=True))


def model_uris(studio: TraversalStudio) -> st.SearchStrategy[str]:
    targets = (studio.run.outside, studio.run.outside / "MLmodel")

    @st.composite
    def aimed_uris(draw) -> str:
        prefix, start = draw(st.sampled_from(list(anchors(studio).items())))
        climb = draw(climbs(start, draw(st.sampled_from(targets))))
        return prefix + climb + draw(st.sampled_from(SUFFIXES))

    junk = st.builds(
        lambda prefix, path, suffix: prefix + path + suffix,
        st.sampled_from(list(anchors(studio)) + list(OTHER_PREFIXES)),
        junk_paths(),
        st.sampled_from(SUFFIXES),
    )
    absolute = st.sampled_from(
        [
            str(studio.run.outside),
            f"file://{studio.run.outside}",
            f"file://elsewhere{studio.run.outside}",
            f"runs:/{studio.run.run_id}/{studio.run.outside}",
            f"runs:/{studio.run.run_id}//{studio.run.outside}",
        ]
    )
    return st.one_of(aimed_uris(), junk, absolute)


def tried_everywhere(studio: TraversalStudio, uri: str) -> None:
    """Parse, Inspect and Predict's download of `uri`: a DeployStudioError with a message, or
    a model inside the allowed places; never a read of the outside folder."""
    before = snapshot(studio.run.outside)
    for stage, call in (
        ("parse", parse_model_uri),
        ("inspect", lambda u: inspect(studio, u)),
        ("predict", lambda u: predict_path(studio, u)),
    ):
        FIGURES.add(SUITE, "cases tried")
        try:
            result = call(uri)
        except DeployStudioError as exc:
            assert str(exc).strip(), (stage, uri)
            continue
        except Exception:
            FIGURES.add(SUITE, "crashes")
            raise
        if stage == "inspect":
            assert SENTINEL_TEXT not in repr(result.flavors), uri
            if result.reference.kind is ModelUriKind.LOCAL_FOLDER:
                assert allowed(studio, result.reference.local_path), uri
        if stage == "predict":
            assert allowed(studio, result), (uri, result)
            assert SENTINEL_TEXT not in (result / "MLmodel").read_text(), uri
    assert outside_reads(studio.settings.home) == [], uri
    assert snapshot(studio.run.outside) == before, uri


def allowed(studio: TraversalStudio, path: Path) -> bool:
    places = (*studio.roots, studio.settings.home / "cache")
    return any(path.resolve().is_relative_to(place.resolve()) for place in places)


@examples(80, 1500)
@given(data=st.data())
def test_no_model_uri_reads_outside_the_allowed_places(studio, data):
    tried_everywhere(studio, data.draw(model_uris(studio), label="uri"))


def registered_sources(studio: TraversalStudio) -> st.SearchStrategy[str]:
    """Version sources as a registry may hand them back: a path, a file:// URI, a runs:/ or
    models:/ URI, each followed by a climb or junk. No remote store: it would need a network."""
    run = studio.run
    artifacts = run.model_folder.parent
    starts = {
        f"{run.model_folder}/": run.model_folder,
        f"file://{run.model_folder}/": run.model_folder,
        f"file://localhost{artifacts}/": artifacts,
        f"file://elsewhere{artifacts}/": artifacts,
        f"runs:/{run.run_id}/model/": run.model_folder,
        f"runs:/{run.run_id}/": artifacts,
    }

    @st.composite
    def sources(draw) -> str:
        prefix, start = draw(st.sampled_from(list(starts.items())))
        path = draw(st.one_of(climbs(start, run.outside), junk_paths()))
        return prefix + path + draw(st.sampled_from(SUFFIXES))

    others = st.sampled_from(
        [
            f"runs:/{run.run_id}/model",
            str(run.model_folder),
            f"models:/{SOURCE_MODEL}/1",
            "mlflow-artifacts:/x/../../etc",
            "javascript:alert(1)",
            "C:\\Windows",
        ]
    )
    return st.one_of(sources(), others)


@examples(40, 600)
@given(data=st.data())
def test_no_registered_source_reads_outside_the_allowed_places(studio, data):
    source = data.draw(registered_sources(studio), label="source")
    try:
        version = studio.registry.client.create_model_version(
            SOURCE_MODEL, source, run_id=studio.run.run_id
        )
    except Exception:  # the store itself refused the source: nothing to open
        return
    tried_everywhere(studio, f"models:/{SOURCE_MODEL}/{version.version}")
