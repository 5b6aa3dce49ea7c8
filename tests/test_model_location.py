"""Issue 21, finding 1: no model URI opens a folder outside its artifacts or the model roots.

A real run in a real SQLite registry (this module's own, so its odd versions stay out of the
other tests' listings), a model folder outside the run's artifacts, and every way of naming
it: Inspect goes through `inspect_model`, Predict through `local_model_path`, as the pages do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploystudio.errors import (
    DeployStudioError,
    InvalidModelUriError,
    ModelNotFoundError,
    UnsafePathError,
)
from deploystudio.model_location import (
    check_location,
    checked_artifact_path,
    contained_folder,
    contained_location,
)
from deploystudio.model_uri import parse_model_uri
from deploystudio.prediction import local_model_path
from tests.uri_traversal import (
    INSIDE_LOADER,
    RunWithModel,
    TraversalStudio,
    inspect,
    outside_reads,
    predict_path,
    traversal_uris,
)

PLACEHOLDER_RUN = RunWithModel("r", Path("/m"), Path("/o"), "../o")  # for the parameter names
TRICKS = list(traversal_uris(PLACEHOLDER_RUN))


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> TraversalStudio:
    return TraversalStudio(tmp_path_factory.mktemp("uri-location"))


@pytest.fixture(autouse=True)
def nothing_read_outside(studio):
    yield
    assert outside_reads(studio.settings.home) == []


@pytest.mark.parametrize("trick", TRICKS)
def test_inspect_refuses_a_runs_uri_that_leaves_the_run(studio, trick):
    with pytest.raises((UnsafePathError, ModelNotFoundError)) as caught:
        inspect(studio, studio.uri(trick))
    assert "runs:/RUN_ID/model" in str(caught.value) or "no model named" in str(caught.value)


@pytest.mark.parametrize("trick", TRICKS)
def test_predict_refuses_a_runs_uri_that_leaves_the_run(studio, trick):
    with pytest.raises((UnsafePathError, ModelNotFoundError)):
        predict_path(studio, studio.uri(trick))


def test_the_runs_own_model_still_opens(studio):
    uri = f"runs:/{studio.run.run_id}/model"
    assert inspect(studio, uri).flavors[0].loader_module == INSIDE_LOADER
    path = predict_path(studio, uri)
    assert path.is_relative_to(studio.settings.home / "cache" / "models")
    assert INSIDE_LOADER in (path / "MLmodel").read_text()
    # The same model by a spelling that stays inside is the same model.
    assert parse_model_uri(f"runs:/{studio.run.run_id}/./model/").uri == uri


def test_a_run_artifact_that_links_out_is_refused(studio):
    (studio.run.model_folder.parent / "linked").symlink_to(studio.run.outside)
    uri = f"runs:/{studio.run.run_id}/linked"
    with pytest.raises(UnsafePathError, match="outside the run's artifacts"):
        inspect(studio, uri)
    with pytest.raises(UnsafePathError):
        predict_path(studio, uri)


def registered_sources(run: RunWithModel) -> dict[str, str]:
    return {
        "path with ..": f"{run.model_folder}/{run.climb}",
        "file URI with %2e%2e": f"file://{run.model_folder}/{run.climb.replace('..', '%2e%2e')}",
        "runs URI that climbs": f"runs:/{run.run_id}/model/{run.climb}",
        "file URI naming another host": f"file://elsewhere{run.outside}",
        "NUL byte": f"{run.model_folder}\x00/x",
    }


@pytest.mark.parametrize("kind", list(registered_sources(PLACEHOLDER_RUN)))
def test_a_version_registered_from_a_climbing_source_is_refused(studio, kind):
    source = registered_sources(studio.run)[kind]
    name = "odd-source-" + kind.replace(" ", "-").replace("%", "").replace(".", "")
    uri = studio.register(name, source, run_id=studio.run.run_id)
    for call in (inspect, predict_path):
        with pytest.raises(UnsafePathError, match="refused"):
            call(studio, uri)


def test_a_version_registered_from_a_runs_uri_resolves_through_the_same_check(studio):
    uri = studio.register("runs-source", f"runs:/{studio.run.run_id}/model", studio.run.run_id)
    assert inspect(studio, uri).flavors[0].loader_module == INSIDE_LOADER
    assert INSIDE_LOADER in (predict_path(studio, uri) / "MLmodel").read_text()


@pytest.mark.parametrize(
    "uri", ["models:/m-../x", "models:/m-%2e%2e%2fx", "models:/m-a\x00b", "models:/m-a\\..\\b"]
)
def test_a_logged_model_id_is_an_id(studio, uri):
    with pytest.raises(InvalidModelUriError, match=r"models:/m-ID|models:/NAME/VERSION"):
        inspect(studio, uri)


def test_local_folders_from_the_pages_stay_inside_the_model_roots(studio):
    outside = studio.run.outside
    for uri in (str(outside), f"file://{outside}", f"{studio.roots[0]}/../{outside.name}"):
        for call in (inspect, predict_path):
            with pytest.raises(UnsafePathError, match="model roots"):
                call(studio, uri)
    # The command line passes no roots: its user may open any folder.
    assert local_model_path(str(outside), studio.settings, studio.registry) == outside.resolve()


@pytest.mark.parametrize(
    "path",
    ["..", "a/../..", "%2e%2e", "%252e%252e", "a\\..", "/etc", "a\x00", "．．/x", "a:b", ".", ""],
)
def test_checked_artifact_path_refuses_with_the_rule(path):
    with pytest.raises(UnsafePathError, match="runs:/RUN_ID/model"):
        checked_artifact_path(path, f"runs:/r/{path}")


def test_contained_location_joins_plain_paths_only():
    assert contained_location("s3://b/1/r/artifacts", "model/sub", "u") == (
        "s3://b/1/r/artifacts/model/sub"
    )
    assert contained_location("s3://b/1/r/artifacts", "", "u") == "s3://b/1/r/artifacts"
    for root in ("s3://b/1/../x", "file:///a/%252e%252e/b", "mlflow-artifacts:/a/..%2fb"):
        with pytest.raises(UnsafePathError, match=r"without '\.\.'"):
            check_location(root, "u")


def test_contained_folder_refuses_a_nul_byte_with_a_message(tmp_path):
    with pytest.raises(DeployStudioError):
        contained_folder(Path("a\x00b"), (tmp_path,))


@pytest.mark.parametrize(
    "uri", ["~%2f", "~no-such-user-here/model", "file://model\uff0f", "file://elsewhere/tmp"]
)
def test_local_uris_the_os_cannot_open_are_messages(uri):
    # Found by the fuzz suite: RuntimeError from expanduser, ValueError from urlparse.
    with pytest.raises(InvalidModelUriError):
        parse_model_uri(uri)


def test_a_version_stored_at_a_name_too_long_for_the_os_is_a_message(studio):
    # Found by the long fuzz run: an OSError (ENAMETOOLONG) from Predict's download.
    uri = studio.register("long-source", f"{studio.run.model_folder}/{'x' * 300}")
    for call in (inspect, predict_path):
        with pytest.raises(DeployStudioError):
            call(studio, uri)
