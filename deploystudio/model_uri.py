"""Parse the model URIs Deploy Studio accepts into a small, explicit reference."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import unquote, urlparse

from deploystudio.errors import InvalidModelUriError
from deploystudio.model_location import checked_artifact_path

ACCEPTED_FORMS = (
    "models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-ID (a logged model), "
    "runs:/RUN_ID/PATH, or a local model folder"
)
_RUN_ID = re.compile(r"^[0-9a-zA-Z]{1,64}$")
# MLflow names logged models m-<32 hex digits>; the ID goes into REST paths and store queries.
_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-zA-Z]{1,64}$")


class ModelUriKind(Enum):
    REGISTERED_VERSION = "registered_version"
    REGISTERED_ALIAS = "registered_alias"
    LOGGED_MODEL = "logged_model"
    RUN_ARTIFACT = "run_artifact"
    LOCAL_FOLDER = "local_folder"


@dataclass(frozen=True)
class ModelReference:
    """What a model URI points at. `uri` is the canonical form MLflow accepts."""

    kind: ModelUriKind
    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    local_path: Path | None = None

    @property
    def is_registered(self) -> bool:
        return self.kind in (ModelUriKind.REGISTERED_VERSION, ModelUriKind.REGISTERED_ALIAS)


def registered_version_uri(name: str, version: str | int) -> str:
    return f"models:/{name}/{version}"


def parse_model_uri(text: str) -> ModelReference:
    """Parse `text`; raise InvalidModelUriError naming the accepted forms when it fits none."""
    uri = (text or "").strip()
    if not uri:
        raise InvalidModelUriError(f"Enter a model URI: {ACCEPTED_FORMS}.")
    if uri.startswith("models:/"):
        return _parse_models_uri(uri)
    if uri.startswith("runs:/"):
        return _parse_runs_uri(uri)
    if uri.startswith("file://"):
        return _local(_file_uri_path(uri))
    if "://" in uri or uri.startswith(("models:", "runs:")):
        raise InvalidModelUriError(f"Unsupported model URI '{uri}'. Use {ACCEPTED_FORMS}.")
    return _local(Path(uri))


def _file_uri_path(uri: str) -> Path:
    """The folder a file:// URI names on this machine; a URI naming another host (which
    urlparse would quietly read as a path here) or one urlparse refuses is an error."""
    try:
        parsed = urlparse(uri)
    except ValueError as exc:  # e.g. a host that changes under NFKC normalisation
        raise InvalidModelUriError(f"'{uri}' is not a file URI: {exc}.") from exc
    if parsed.netloc not in ("", "localhost"):
        raise InvalidModelUriError(
            f"'{uri}' names a folder on the host '{parsed.netloc}': a file URI must name a "
            "folder on this machine, as file:///path/to/model."
        )
    return Path(unquote(parsed.path))


def _local(path: Path) -> ModelReference:
    if "\x00" in str(path):
        # The OS cannot take a NUL byte in a path: resolve() would raise ValueError.
        raise InvalidModelUriError(f"{str(path)!r} contains a NUL byte: give a real model folder.")
    try:
        resolved = path.expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # ~user of an unknown user, a link loop
        raise InvalidModelUriError(
            f"'{path}' cannot be opened as a model folder ({exc}): give the folder's full path."
        ) from exc
    return ModelReference(ModelUriKind.LOCAL_FOLDER, uri=str(resolved), local_path=resolved)


def _parse_models_uri(uri: str) -> ModelReference:
    body = uri[len("models:/") :].strip("/")
    if body.startswith("m-") and "/" not in body and "@" not in body:
        if not _LOGGED_MODEL_ID.match(body):
            raise InvalidModelUriError(
                f"'{uri}' is not a logged model URI: use models:/m-ID, where the ID is the "
                "letters and digits MLflow gave the model (models:/m-0123abcd...)."
            )
        return ModelReference(ModelUriKind.LOGGED_MODEL, uri=f"models:/{body}")
    if "@" in body and "/" not in body:
        name, alias = body.split("@", 1)
        if name and alias:
            return ModelReference(
                ModelUriKind.REGISTERED_ALIAS, uri=f"models:/{name}@{alias}", name=name, alias=alias
            )
    parts = body.split("/")
    if len(parts) == 2 and parts[0] and parts[1].isdigit():
        name, version = parts
        return ModelReference(
            ModelUriKind.REGISTERED_VERSION,
            uri=registered_version_uri(name, version),
            name=name,
            version=version,
        )
    raise InvalidModelUriError(
        f"'{uri}' is not a model version: use models:/NAME/VERSION (a number) "
        "or models:/NAME@ALIAS."
    )


def _parse_runs_uri(uri: str) -> ModelReference:
    body = uri[len("runs:/") :].strip("/")
    run_id, _, path = body.partition("/")
    if not _RUN_ID.match(run_id) or not path:
        raise InvalidModelUriError(f"'{uri}' is not a run model URI: use runs:/RUN_ID/PATH.")
    # Checked here so that a bad path is refused before any registry call, and checked again
    # where it is joined to the run's artifact root (Registry.artifact_location).
    path = checked_artifact_path(path, uri)
    return ModelReference(ModelUriKind.RUN_ARTIFACT, uri=f"runs:/{run_id}/{path}", run_id=run_id)
