"""What a batch worker runs: score the files of one mini-batch and write their predictions.

These functions run inside `PredictionWorker` processes (model code never runs in the job's
runner or the app); the runner calls them by name. A file is read in chunks of about
`chunk_rows` rows (CSV through pandas' chunked reader, Parquet by record batches), each chunk
is predicted through pyfunc (which enforces the signature) and appended to the file's own part
file, so a worker's memory depends on the chunk size, not on the file's size. `row` counts each
file's rows from 0 across its chunks, as Azure ML's predictions file does.

A bundle's batch script is run as Azure runs it instead: `init()` once per worker, then
`run(mini_batch)` with the file paths; what it returns is the mini-batch's output.
"""

from __future__ import annotations

import importlib.util
import os
import re
import resource
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.types import Schema
from threadpoolctl import threadpool_limits

from deploystudio.deployment.batch.inputs import CSV_SUFFIXES
from deploystudio.payload_messages import ROWS_COUNTED
from deploystudio.prediction import ModelCache, predictions_frame, readable_enforcement_error

ROW_COLUMN = "row"
FILE_COLUMN = "file_name"
# The loaded model (and bundle module) of this worker process, for its whole life.
_MODELS = ModelCache(capacity=1)
_SCRIPTS: dict[str, Any] = {}


@dataclass(frozen=True)
class ScorerSpec:
    """What a worker needs to score: the model folder, or a batch script and its model folder."""

    model_path: str
    script_path: str | None
    chunk_rows: int
    write_output: bool
    parts_dir: str
    progress_path: str
    # Threads for the model's numeric libraries (BLAS, OpenMP) in each worker: the machine's
    # cores shared among the job's workers. Left to themselves, each worker's BLAS starts a
    # thread per core; measured with 2 workers on 2 cores, their threads then fought over the
    # cores (OpenBLAS waits for work by spinning): the plain loop's CPU time fell from 408 to
    # 174 ms per million rows at the same speed with one thread.
    native_threads: int = 1


@dataclass(frozen=True)
class FileOutcome:
    position: int
    rows: int
    error: str | None = None


@dataclass(frozen=True)
class Part:
    """A CSV file without header holding the rows of `positions` (files), in `columns` order.
    Its path is `part_path(parts_dir, positions[0])`: the runner derives it rather than taking
    a path from the worker, whose model code could make it name any file."""

    positions: list[int]
    columns: list[str]
    rows: int


@dataclass(frozen=True)
class MiniBatchResult:
    """What a worker reports. It crosses the worker's reply channel as plain data (`as_plain`,
    `from_plain`): replies carry no classes of ours."""

    files: list[FileOutcome]
    parts: list[Part] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def as_plain(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_plain(cls, value: Any, positions: set[int]) -> MiniBatchResult:
        """Rebuilt from a worker's reply; raises ValueError when it does not fit the batch."""
        files = [
            FileOutcome(int(f["position"]), int(f["rows"]), f["error"]) for f in value["files"]
        ]
        parts = [
            Part(
                [int(p) for p in part["positions"]],
                [str(c) for c in part["columns"]],
                int(part["rows"]),
            )
            for part in value["parts"]
        ]
        if {f.position for f in files} != positions or not all(
            part.positions and set(part.positions) <= positions for part in parts
        ):
            raise ValueError("the worker reported files that are not those of its mini-batch")
        return cls(files, parts, float(value["peak_rss_mb"]))


def part_path(parts_dir: Path | str, position: int) -> Path:
    return Path(parts_dir) / f"{position:06d}.csv"


class _FileError(Exception):
    """One file cannot be scored; the message names it and the rows."""


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(spec: ScorerSpec) -> float:
    """Load the model (or import the script and run its init()); the RSS in MB afterwards."""
    threadpool_limits(spec.native_threads)
    if spec.script_path:
        _script(spec)
    else:
        _MODELS.get(spec.model_path)
    return rss_mb()


def score_mini_batch(spec: ScorerSpec, files: list[tuple[int, str]]) -> dict[str, Any]:
    """Score `files` (position, path); a file that fails does not stop the others. The
    `MiniBatchResult` as plain data."""
    progress = _Progress(spec.progress_path)
    if spec.script_path:
        return _run_script(spec, files, progress).as_plain()
    model, _, _ = _MODELS.get(spec.model_path)
    schema = model.metadata.get_input_schema()
    outcomes, parts = [], []
    for position, path in files:
        part = part_path(spec.parts_dir, position)
        try:
            rows, columns = _score_file(model, schema, Path(path), spec, part, progress)
        except _FileError as exc:
            part.unlink(missing_ok=True)
            outcomes.append(FileOutcome(position, 0, str(exc)))
            continue
        outcomes.append(FileOutcome(position, rows))
        if spec.write_output and columns is not None:
            parts.append(Part([position], columns, rows))
    return MiniBatchResult(outcomes, parts, peak_rss_mb()).as_plain()


class _Progress:
    """Rows scored in this call, in a small file the runner reads for its progress counter."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows
        with open(self.path, "w") as handle:
            handle.write(str(self.rows))


def _score_file(
    model: Any,
    schema: Schema | None,
    path: Path,
    spec: ScorerSpec,
    part_path: Path,
    progress: _Progress,
) -> tuple[int, list[str] | None]:
    # Reading, predicting and writing take turns. Overlapping them on threads was tried and
    # measured: the same wall time and CPU time as taking turns (the GIL let only one run at a
    # time), so the simpler loop stayed.
    name = path.name
    rows = 0
    writer: pacsv.CSVWriter | None = None
    sink = None
    first_schema: pa.Schema | None = None
    try:
        for frame in _chunks(path, spec.chunk_rows):
            predictions = _predict(model, frame, schema, name, rows)
            table = _output_table(predictions, rows, name)
            if spec.write_output:
                if first_schema is None:
                    first_schema = table.schema
                    sink = pa.OSFile(str(part_path), "wb")
                    options = pacsv.WriteOptions(include_header=False)
                    writer = pacsv.CSVWriter(sink, first_schema, write_options=options)
                elif table.schema != first_schema:
                    table = _same_types(table, first_schema, name, rows)
                writer.write_table(table)
            rows += len(frame)
            progress.add(len(frame))
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    return rows, None if first_schema is None else list(first_schema.names)


def _chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows, `chunk_rows` at a time, as DataFrames.

    CSV goes through pandas' chunked reader: measured on a 200 MB file, its peak memory stayed
    flat (12 MB over 20 MB and 200 MB files) where pyarrow's streaming reader grew with the file
    (56 MB, then 107 MB). Types are left to pandas per chunk; the model's signature is enforced
    by pyfunc on each chunk, and its refusals name the row.
    """
    is_csv = path.name.lower().endswith(CSV_SUFFIXES)
    rows_read = 0
    try:
        if is_csv:
            frames: Iterator[pd.DataFrame] = pd.read_csv(path, chunksize=chunk_rows)
        else:
            frames = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(chunk_rows))
        for frame in frames:
            rows_read += len(frame)
            yield frame
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError) as exc:
        kind = "CSV" if is_csv else "Parquet"
        raise _FileError(_read_error(path, kind, exc, rows_read)) from exc


def _read_error(path: Path, kind: str, exc: Exception, rows_read: int) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f"{path.name}: cannot be read as {kind}"
    if rows_read:
        where += f" after row {rows_read} ({ROWS_COUNTED}; the rows before it were scored)"
    return f"{where}: {message}"


def _predict(model: Any, frame: pd.DataFrame, schema: Schema | None, name: str, first: int) -> Any:
    span = f"{name}, rows {first + 1}-{first + len(frame)} ({ROWS_COUNTED})"
    try:
        return model.predict(frame)
    except MlflowException as exc:
        message = readable_enforcement_error(exc.message, frame, schema)
        raise _FileError(f"{span}: {_shift_rows(message, first)}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # model code can raise anything; the user needs its message
        raise _FileError(f"{span}: the model raised {type(exc).__name__}: {exc}") from exc


def _shift_rows(message: str, offset: int) -> str:
    """Row numbers of a message about one chunk, made row numbers of the whole file."""
    pattern = rf"row (\d+)(\s*[,(]\s*{re.escape(ROWS_COUNTED)})"
    return re.sub(pattern, lambda m: f"row {int(m[1]) + offset}{m[2]}", message)


def _output_table(raw: Any, first_row: int, name: str) -> pa.Table:
    """`row`, the prediction column(s), `file_name`: Azure's predictions file layout."""
    rows = np.arange(first_row, first_row + _length(raw), dtype=np.int64)
    if isinstance(raw, np.ndarray) and raw.ndim == 1:
        prediction = _arrow_array(raw)
        columns = {"prediction": prediction}
    else:
        frame = predictions_frame(raw)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        columns = {str(n): table.column(n) for n in table.column_names}
    file_names = pa.repeat(pa.scalar(name), len(rows))
    return pa.table({ROW_COLUMN: rows, **columns, FILE_COLUMN: file_names})


def _arrow_array(values: np.ndarray) -> pa.Array:
    # Straight from the array (no Python list): about twice as fast for class labels.
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if values.dtype != object:
            raise
        return pa.array(list(values))  # mixed Python objects: let Arrow infer from the items


def _length(raw: Any) -> int:
    return len(raw) if hasattr(raw, "__len__") else len(predictions_frame(raw))


def _same_types(table: pa.Table, schema: pa.Schema, name: str, first: int) -> pa.Table:
    try:
        return table.cast(schema)
    except (pa.ArrowException, ValueError) as exc:
        raise _FileError(
            f"{name}, from row {first + 1}: the model's output changed shape or type between "
            f"chunks ({table.schema.names} vs {schema.names}): {exc}"
        ) from exc


# ----------------------------------------------------------------------------- bundles


def _script(spec: ScorerSpec) -> Any:
    module = _SCRIPTS.get(spec.script_path)
    if module is None:
        # As an Azure batch deployment: the model folder in AZUREML_MODEL_DIR, init() once.
        os.environ["AZUREML_MODEL_DIR"] = spec.model_path
        loader = importlib.util.spec_from_file_location("batch_score", spec.script_path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        for function in ("init", "run"):
            if not callable(getattr(module, function, None)):
                raise ValueError(f"The batch script has no {function}() function.")
        module.init()
        _SCRIPTS[spec.script_path] = module
    return module


def _run_script(
    spec: ScorerSpec, files: list[tuple[int, str]], progress: _Progress
) -> MiniBatchResult:
    module = _script(spec)
    result = module.run([path for _, path in files])
    # Azure ML's append_row output takes a DataFrame or a list (one row per element).
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame({"result": list(result)})
    progress.add(len(frame))
    parts = []
    if spec.write_output:
        frame.to_csv(part_path(spec.parts_dir, files[0][0]), header=False, index=False)
        columns = [str(c) for c in frame.columns]
        parts.append(Part([pos for pos, _ in files], columns, len(frame)))
    # run() returns the rows of all its files together: they are counted per file when it names
    # them (the batch template's file_name column), else on the mini-batch's first file.
    if FILE_COLUMN in frame.columns:
        counts = frame[FILE_COLUMN].astype(str).value_counts().to_dict()
        rows = [counts.get(Path(path).name, 0) for _, path in files]
    else:
        rows = [len(frame)] + [0] * (len(files) - 1)
    outcomes = [FileOutcome(pos, n) for (pos, _), n in zip(files, rows, strict=True)]
    return MiniBatchResult(outcomes, parts, peak_rss_mb())
