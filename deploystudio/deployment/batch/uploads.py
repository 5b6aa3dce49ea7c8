"""Files uploaded for a batch job, saved into a new folder of the data folder's batch inputs.

A browser sends any name it likes: only a plain base name is kept, so no upload is written
outside its own folder.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from deploystudio.config import Settings
from deploystudio.errors import BatchInputError

UPLOADS_FOLDER = Path("batch-inputs") / "uploads"
UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_LENGTH = 120


def safe_file_name(name: str) -> str:
    """A plain base name: no folders (either slash), no leading dots, no odd characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = UNSAFE_CHARACTERS.sub("_", base).lstrip(".")[-MAX_NAME_LENGTH:]
    if not cleaned or set(cleaned) <= {"_", "."}:
        raise BatchInputError(
            f"The uploaded file name {name!r} has no usable characters: rename the file."
        )
    return cleaned


def save_uploads(settings: Settings, files: Iterable[tuple[str, bytes]]) -> Path:
    """Write (name, content) pairs into `<data folder>/batch-inputs/uploads/<id>/`; return it.

    Two uploads with the same name get `-2`, `-3`... so neither replaces the other.
    """
    folder = settings.home / UPLOADS_FOLDER / secrets.token_hex(6)
    folder.mkdir(parents=True)
    for name, content in files:
        target = folder / safe_file_name(name)
        number = 1
        while target.exists():
            number += 1
            stem, suffix = Path(safe_file_name(name)).stem, Path(target.name).suffix
            target = folder / f"{stem}-{number}{suffix}"
        target.write_bytes(content)
    return folder
