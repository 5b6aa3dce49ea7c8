"""The path corpus against every place that takes a user- or registry-supplied path.

Each place must refuse with its DeployStudioError (or, for a name it cleans, give a plain base
name), and nothing outside its root is read or written: a sentinel folder outside every root
is snapshotted before and compared after each test.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from deploystudio.customization.bundles import BundleStore, check_name
from deploystudio.deployment.azure.export import _prepare_folder
from deploystudio.deployment.azure.workspace import find_config_file
from deploystudio.deployment.batch.inputs import check_within_roots
from deploystudio.deployment.batch.uploads import UPLOADS_FOLDER, safe_file_name, save_uploads
from deploystudio.errors import (
    BatchInputError,
    BundleError,
    DeployStudioError,
    InvalidModelError,
    InvalidModelUriError,
    UnsafePathError,
)
from deploystudio.inspection import inspect_model
from deploystudio.model_files import LocalModelFiles, RegistryModelFiles
from deploystudio.model_uri import parse_model_uri
from tests.conftest import settings_for
from tests.reliability.figures import FIGURES

SUITE = "paths"
SECRET_TEXT = "sentinel: must never be read or changed"


def corpus(outside: Path) -> list[str]:
    sentinel = outside / "sentinel.txt"
    return [
        "../sentinel.txt",
        "../../outside/sentinel.txt",
        "../outside/sentinel.txt",
        "%2e%2e/outside/sentinel.txt",
        "%2e%2e%2foutside%2fsentinel.txt",
        "..%2f..%2foutside",
        "%252e%252e/outside",
        "..\\..\\outside\\sentinel.txt",
        "sub/../../outside/sentinel.txt",
        str(sentinel),
        str(outside),
        f"file://{sentinel}",
        f"file://{outside}",
        "file:///etc/passwd",
        "/etc/passwd",
        "~/.bashrc",
        "~root",
        "MLmodel#/../../outside/sentinel.txt",
        "MLmodel?x=../../outside/sentinel.txt",
        "#../outside",
        "?../outside",
        "link-out/sentinel.txt",
        "link-out",
        "model/link-out",
        "a\x00b",
        "MLmodel\x00.txt",
        "x" * 300,
        "x/" * 3000,
        ("d" * 250 + "/") * 20,
        "",
        " ",
        ".",
        "..",
        "C:\\Windows\\win.ini",
        "\\\\server\\share",
        "models:/../../x",
    ]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    base = tmp_path_factory.mktemp("paths")
    inside, outside = base / "inside", base / "outside"
    model = inside / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    outside.mkdir()
    (outside / "sentinel.txt").write_text(SECRET_TEXT)
    (outside / "MLmodel").write_text("flavors: {}\n")  # a model folder, but not an allowed one
    (inside / "link-out").symlink_to(outside)
    (model / "link-out").symlink_to(outside)
    return base, inside, outside, model


@pytest.fixture
def untouched(layout):
    """Fails the test if anything under the outside folder or next to the roots changed."""
    base, _, outside, _ = layout
    before = snapshot(outside), sorted(p.name for p in base.iterdir())
    yield
    assert (snapshot(outside), sorted(p.name for p in base.iterdir())) == before


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(folder).as_posix(): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in folder.rglob("*")
        if p.is_file()
    }


def refused(call, *errors: type[DeployStudioError], harmless=lambda result: False):
    """`call()` must raise one of `errors` with a message, or return what `harmless` accepts
    (a plain name that is simply not there, say); any other outcome fails the test."""
    FIGURES.add(SUITE, "cases tried")
    try:
        result = call()
    except errors as exc:
        assert str(exc).strip()
        return exc
    except Exception:
        FIGURES.add(SUITE, "crashes")
        raise
    assert harmless(result), f"accepted, returned {result!r}"
    return result


@pytest.fixture(scope="module", autouse=True)
def _measured():
    FIGURES.measured(SUITE, "cases tried", "crashes")


def test_artifact_browsing_of_a_local_model_stays_inside_it(layout, untouched):
    _, _, outside, model = layout
    files = LocalModelFiles(model)
    for path in corpus(outside):
        refused(lambda p=path: files.fetch(p), UnsafePathError, harmless=_none_or_inside(model))
    entries, _ = files.list_artifacts()
    link = next(e for e in entries if e.path == "link-out")
    assert link.size is None  # listed, never followed


def test_artifact_browsing_of_a_registry_model_stays_inside_it(
    layout, untouched, settings, registry, seeded
):
    _, _, outside, _ = layout
    uri = "models:/iris-classifier/1"
    location = registry.artifact_location(parse_model_uri(uri))
    files = RegistryModelFiles(uri, location, settings.inspection_cache, settings.tracking_uri)
    cache_before = set(files.local_root.rglob("*"))
    for path in corpus(outside):
        refused(
            lambda p=path: files.fetch(p),
            UnsafePathError,
            harmless=_none_or_inside(files.local_root),
        )
    assert set(files.local_root.rglob("*")) == cache_before


def _none_or_inside(root: Path):
    return lambda result: result is None or result.resolve().is_relative_to(root.resolve())


def test_batch_input_paths_stay_inside_the_roots(layout, untouched):
    _, inside, outside, _ = layout
    for path in corpus(outside):
        # Relative paths resolve against the working folder, which is no root.
        refused(lambda p=path: check_within_roots(Path(p), (inside,)), BatchInputError)
    assert check_within_roots(inside / "model", (inside,)) == (inside / "model").resolve()


def test_uploaded_file_names_become_plain_names_inside_their_folder(layout, untouched, tmp_path):
    _, _, outside, _ = layout
    home = tmp_path / "home"
    settings = settings_for(home)
    for name in corpus(outside):
        FIGURES.add(SUITE, "cases tried")
        try:
            cleaned = safe_file_name(name)
        except BatchInputError as exc:
            assert str(exc).strip()
            continue
        assert "/" not in cleaned and "\\" not in cleaned and "\x00" not in cleaned
        assert not cleaned.startswith(".") and len(cleaned.encode()) <= 255
    folder = save_uploads(
        settings, [(name, b"data") for name in corpus(outside) if _cleanable(name)]
    )
    written = [p for p in home.rglob("*") if p.is_file()]
    assert written and all(p.parent == folder for p in written)
    assert folder.parent == home / UPLOADS_FOLDER


def _cleanable(name: str) -> bool:
    try:
        safe_file_name(name)
    except BatchInputError:
        return False
    return True


def test_bundle_names_and_versions_stay_inside_the_store(layout, untouched, tmp_path):
    _, _, outside, _ = layout
    store = BundleStore(tmp_path / "bundles")
    for text in corpus(outside):
        refused(lambda t=text: check_name(t), BundleError, harmless=lambda n: "/" not in n)
        refused(lambda t=text: store.get(t), BundleError)
        refused(lambda t=text: store.get("iris-script", t), BundleError)
        refused(lambda t=text: store.delete(t, 1), BundleError)
    assert not (tmp_path / "bundles").exists() or not any((tmp_path / "bundles").rglob("*"))


def test_azure_export_folders_and_config_paths_stay_inside_their_roots(layout, untouched):
    _, inside, outside, _ = layout
    for path in corpus(outside):
        # The whole export_online first checks the folder with this; nothing is written before.
        refused(lambda p=path: _prepare_folder(Path(p), [inside]), UnsafePathError)
        refused(lambda p=path: find_config_file([inside], p), UnsafePathError)
    assert find_config_file([inside]) is None


def test_local_model_folders_must_be_inside_the_model_roots(layout, untouched, settings, registry):
    _, inside, outside, model = layout
    for path in corpus(outside):
        refused(
            lambda p=path: inspect_model(p, settings, registry, allowed_local_roots=(inside,)),
            UnsafePathError,
            InvalidModelUriError,
            InvalidModelError,
        )
    for path in (
        str(outside),
        f"file://{outside}",
        str(inside / "link-out"),
        f"{model}/../../outside",
    ):
        error = refused(
            lambda p=path: inspect_model(p, settings, registry, allowed_local_roots=(inside,)),
            UnsafePathError,
        )
        assert "model roots" in str(error)
    assert os.path.exists(outside / "sentinel.txt")
