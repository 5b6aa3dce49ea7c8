"""What a batch job reads: the files of its input, which of them can be scored, the allowed roots.

As on Azure ML, the input is one file or a folder whose files (not its sub-folders) are scored.
Files of another type are listed too, so the job reports them as failed instead of skipping
them without a word.
"""

from __future__ import annotations

from pathlib import Path

from deploystudio.errors import BatchInputError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
SCORED_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES


def is_scorable(path: Path | str) -> bool:
    return str(path).lower().endswith(SCORED_SUFFIXES)


def unsupported_reason(path: Path | str) -> str:
    return (
        f"{Path(path).name}: only .csv and .parquet files can be scored; this file was not read. "
        "Convert it, or move it out of the input folder."
    )


def link_reason(path: Path | str) -> str:
    return (
        f"{Path(path).name}: this file is a symbolic link, and batch jobs read only plain files; "
        "it was not read. Copy the file itself into the input folder."
    )


def input_files(input_path: Path) -> list[Path]:
    """The files a job over `input_path` scores, sorted by name: the file itself, or the files
    directly inside the folder (sub-folders are ignored, as Azure does)."""
    path = Path(input_path)
    try:
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise BatchInputError(
                f"The input '{input_path}' does not exist: give a .csv or .parquet file, or a "
                "folder of them."
            )
        files = sorted(p for p in path.iterdir() if p.is_file())
    except OSError as exc:
        # is_file() only hides "does not exist": a name over the OS's limit (ENAMETOOLONG) or
        # a folder without read permission raise here.
        raise BatchInputError(
            f"The input '{input_path}' cannot be read ({exc.strerror or exc}): give a .csv or "
            ".parquet file, or a folder of them, that this server may read."
        ) from None
    if not files:
        raise BatchInputError(
            f"The folder '{input_path}' holds no files (sub-folders are not read, as on Azure ML)."
        )
    return files


def check_within_roots(input_path: Path, roots: tuple[Path, ...]) -> Path:
    """The resolved `input_path` if it lies inside one of `roots` (symlinks and `..` resolved
    first), else BatchInputError naming the roots. Used for paths picked on a page."""
    if "\x00" in str(input_path):
        # The OS cannot take a NUL byte in a path: resolve() would raise ValueError.
        raise BatchInputError(f"{str(input_path)!r} contains a NUL byte: give a real folder path.")
    try:
        resolved = Path(input_path).expanduser().resolve()
    except RuntimeError:
        # "~name/..." for a user this machine does not know: pathlib cannot expand it.
        raise BatchInputError(
            f"'{input_path}' starts with a home folder ('~') this server does not know: give the "
            "full path of a folder inside the batch input folders."
        ) from None
    for root in roots:
        if resolved.is_relative_to(Path(root).expanduser().resolve()):
            return resolved
    allowed = ", ".join(str(r) for r in roots) or "none configured"
    raise BatchInputError(
        f"'{input_path}' is outside the folders batch jobs may read ({allowed}). Copy the files "
        "into one of them, or set DEPLOYSTUDIO_BATCH_INPUT_ROOTS."
    )


def mini_batches(items: list, size: int) -> list[list]:
    """`items` in consecutive groups of `size` (the last one may be shorter)."""
    return [items[start : start + size] for start in range(0, len(items), size)]
