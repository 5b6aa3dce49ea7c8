"""The one containment check every model URI goes through before its files are read.

A model is found in one of two ways, and both are checked here and nowhere else:

- in an artifact store (`models:/NAME/VERSION`, `models:/NAME@ALIAS`, `models:/m-ID`,
  `runs:/RUN_ID/PATH`): `contained_location` takes the location the registry gives (a run's
  artifact root, a logged model's or a version's source) and the artifact path inside it, and
  returns the joined location only if it stays inside that root once decoded;
- on this machine (a folder or `file://` URI): `contained_folder` returns the resolved folder
  only if it lies inside the allowed roots (the pages pass DEPLOYSTUDIO_MODEL_ROOTS; the
  command line passes None, its user may open any folder).

`Registry.artifact_location`, `inspection.inspect_model` and `prediction.local_model_path` call
these before anything is listed, fetched or downloaded.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.exceptions import MlflowException
from mlflow.utils.uri import validate_path_is_safe, validate_path_within_directory

from deploystudio.errors import InvalidModelError, UnsafePathError
from deploystudio.model_files import local_artifact_folder, safe_relative_path

ARTIFACT_PATH_RULE = (
    "a plain relative path inside the run's artifacts, such as runs:/RUN_ID/model "
    "(no '..', no leading '/', no backslashes, no percent-encoding, no NUL byte)"
)
# Percent-encoding is undone this many times at most, as MLflow's own server does.
_MAX_DECODINGS = 10


def checked_artifact_path(path: str, uri: str) -> str:
    """The PATH of `runs:/RUN_ID/PATH` as a normalised relative path, or UnsafePathError.

    MLflow's `validate_path_is_safe` (what its server applies to artifact paths) goes first:
    it decodes percent-encoding repeatedly and refuses `..`, absolute paths and `#`. It lets a
    backslash through on POSIX and turns a NUL byte into `%00` instead of refusing it, so
    `safe_relative_path` follows, which refuses any encoding, backslash, NUL and scheme. The
    NFKC form is checked too: `．．` (fullwidth dots) becomes `..` wherever names are
    normalised on the way to a store.
    """
    problem = f"'{uri}' is refused: the path after the run ID must be {ARTIFACT_PATH_RULE}."
    try:
        validate_path_is_safe(path)
        relative = safe_relative_path(path)
        safe_relative_path(unicodedata.normalize("NFKC", path))
    except (MlflowException, UnsafePathError, ValueError) as exc:
        raise UnsafePathError(problem) from exc
    if relative == ".":
        raise UnsafePathError(problem)
    return relative


def check_location(location: str, uri: str) -> str:
    """`location` as the registry gave it (a version's source, a run's or a logged model's
    artifact root), or UnsafePathError when it names a place by climbing out of another.

    MLflow's server refuses such a source when a version is registered over REST (its private
    `_validate_non_local_source_contains_relative_paths`), but a SQLite store, or a version
    registered by an older server, hands any source back unchecked.
    """
    refused = UnsafePathError(
        f"{uri} is stored at '{location}', which is refused: a model's location must be an "
        "absolute path or URI without '..', NUL bytes or a host other than this machine. "
        "Register the model again from its own artifacts."
    )
    if any(ord(c) < 32 or ord(c) == 127 for c in location):
        raise refused
    decoded = location
    for _ in range(_MAX_DECODINGS):
        if unquote(decoded) == decoded:
            break
        decoded = unquote(decoded)
    else:
        raise refused
    if any(ord(c) < 32 for c in decoded):
        raise refused
    parsed = urlparse(decoded)
    path = parsed.path.replace("\\", "/")
    if ".." in path.split("/") or ".." in unicodedata.normalize("NFKC", path).split("/"):
        raise refused
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise refused  # file://host/path would be read as /path on this machine
    return location


def contained_location(root: str, relative: str, uri: str) -> str:
    """`root` joined with the artifact path `relative` ("" for the root itself), checked to
    stay inside `root`; UnsafePathError otherwise.

    For a root on this machine the joined path is also resolved, links included, with MLflow's
    `validate_path_within_directory`: a run artifact that is a link out of the run is refused.
    """
    check_location(root, uri)
    if not relative:
        return root
    relative = checked_artifact_path(relative, uri)
    joined = f"{root.rstrip('/')}/{relative}"
    folder = local_artifact_folder(root)
    if folder is not None:
        try:
            validate_path_within_directory(str(folder), str(folder / relative))
        except MlflowException as exc:
            raise UnsafePathError(
                f"'{relative}' of {uri} leads outside the run's artifacts (a link?), so it is "
                "not read. Log the model's files themselves."
            ) from exc
    # A remote store has no links to follow: a normalised relative path cannot climb out.
    return joined


def contained_folder(path: Path, allowed_roots: tuple[Path, ...] | None) -> Path:
    """A local model folder, resolved (links followed), and inside one of `allowed_roots`
    when they are given; UnsafePathError naming the roots otherwise."""
    try:
        resolved = path.expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte
        raise UnsafePathError(f"'{path}' cannot be opened as a model folder: {exc}.") from exc
    if allowed_roots is not None and not any(
        resolved.is_relative_to(root.resolve()) for root in allowed_roots
    ):
        roots = ", ".join(str(r) for r in allowed_roots) or "none configured"
        raise UnsafePathError(
            f"Local model folders must be inside the configured model roots ({roots}). "
            "Set DEPLOYSTUDIO_MODEL_ROOTS to allow a folder."
        )
    try:
        resolved.is_dir()  # raises for a name the OS cannot take (too long), not a missing one
    except OSError as exc:
        raise InvalidModelError(
            f"'{str(path)[:80]}' cannot be opened as a model folder ({exc.strerror}): give "
            "the folder that contains the MLmodel file."
        ) from exc
    return resolved
