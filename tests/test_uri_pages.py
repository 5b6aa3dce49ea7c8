"""Issue 21, finding 1 on the pages: `?uri=runs:/RUN/model/../..` (and its encoded spellings)
on Inspect and Predict shows an error message, never the model outside the run's artifacts."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO_ROOT
from tests.page_support import (  # noqa: F401 (fixtures)
    fresh_caches,
    prediction_worker_stopped_at_the_end,
)
from tests.reliability.model_corpus import SENTINEL_TEXT
from tests.uri_traversal import log_run_with_model, outside_reads, traversal_uris

APP = str(REPO_ROOT / "app.py")
PAGES = ("views/inspect.py", "views/predict.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory, settings, registry, seeded):
    """A run in the session's registry, which the pages read."""
    return log_run_with_model(registry, settings, tmp_path_factory.mktemp("uri-pages"))


def open_page(page: str, uri: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.switch_page(page)
    at.query_params["uri"] = uri
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "subheader", "caption", "code") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("trick", ["dot-dot", "percent dots", "NUL byte"])
def test_a_runs_uri_that_leaves_the_run_is_an_error_message(run, studio_home, page, trick):
    at = open_page(page, traversal_uris(run)[trick])
    assert "runs:/RUN_ID/model" in at.error[0].value
    assert SENTINEL_TEXT not in shown(at)
    assert outside_reads(studio_home / "cache") == []


@pytest.mark.parametrize("page", PAGES)
def test_a_folder_outside_the_model_roots_is_an_error_message(run, studio_home, page):
    at = open_page(page, str(run.outside))
    assert "model roots" in at.error[0].value
    assert outside_reads(studio_home / "cache") == []


def test_the_runs_own_model_still_opens_on_inspect(run):
    at = open_page("views/inspect.py", f"runs:/{run.run_id}/model")
    assert not at.error
    assert f"runs:/{run.run_id}/model" in shown(at)
