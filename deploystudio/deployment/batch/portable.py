"""What a batch worker runs in a model's own environment (issue 19, parts 3 and 4).

The app's scorer (`scoring.py`) is built on the app's stack: pyarrow's CSV writer, threadpoolctl,
the app's prediction helpers. A model's own environment may have MLflow 2.x or 3.x, pandas 1.x
to 3.x, numpy 1.x or 2.x, and no pyarrow or threadpoolctl at all, so this module imports only
the standard library at module level (its package `__init__`s import nothing either), takes and
returns plain data (a dict for the spec, lists and numbers back; never a class of ours, whose
pickle would import the app's modules), and writes part files with pandas' own CSV writer,
which every pandas version has. It writes the same layout as the app's scorer: `row`, the
prediction column(s), `file_name`, no header; the runner appends the parts unchanged.

Parquet input needs pyarrow (or fastparquet) in the model's environment: without either a
Parquet file fails with a message saying so, and CSV files still score.
"""

from __future__ import annotations

import importlib.util
import os
import resource
from pathlib import Path
from typing import Any

ROW_COLUMN = "row"
FILE_COLUMN = "file_name"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
# Loaded model (and script module) of this worker process, for its whole life.
_LOADED: dict[str, Any] = {}


class _FileError(Exception):
    """One file cannot be scored; the message names it and the rows."""


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _limit_threads(count: int) -> None:
    # threadpoolctl, when the environment has it, limits BLAS/OpenMP pools already loaded; the
    # variables cover those loaded afterwards (the model's libraries, imported on load).
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(count)


def prepare(spec: dict[str, Any]) -> float:
    """Load the model (or import the script and run its init()); the RSS in MB afterwards."""
    _limit_threads(int(spec.get("native_threads") or 1))
    if spec.get("script_path"):
        _script(spec)
    else:
        _model(spec["model_path"])
    return _rss_mb()


def versions() -> dict[str, str | None]:
    """What this environment runs (for the job's log and tests)."""
    import importlib.metadata
    import platform

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("mlflow", "pandas", "numpy", "pyarrow"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _model(model_path: str) -> Any:
    model = _LOADED.get(model_path)
    if model is None:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(model_path)
        _LOADED[model_path] = model
    return model


def score_mini_batch(spec: dict[str, Any], files: list[tuple[int, str]]) -> dict[str, Any]:
    """Score `files` (position, path); a file that fails does not stop the others. The same
    plain report as `scoring.score_mini_batch` (`MiniBatchResult.as_plain`)."""
    progress = _Progress(spec["progress_path"])
    if spec.get("script_path"):
        return _run_script(spec, files, progress)
    model = _model(spec["model_path"])
    outcomes, parts = [], []
    for position, path in files:
        part = Path(spec["parts_dir"]) / f"{position:06d}.csv"
        try:
            rows, columns = _score_file(model, Path(path), spec, part, progress)
        except _FileError as exc:
            part.unlink(missing_ok=True)
            outcomes.append({"position": position, "rows": 0, "error": str(exc)})
            continue
        outcomes.append({"position": position, "rows": rows, "error": None})
        if spec["write_output"] and columns is not None:
            parts.append({"positions": [position], "columns": columns, "rows": rows})
    return {"files": outcomes, "parts": parts, "peak_rss_mb": _peak_rss_mb()}


class _Progress:
    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows
        with open(self.path, "w") as handle:
            handle.write(str(self.rows))


def _score_file(
    model: Any, path: Path, spec: dict[str, Any], part: Path, progress: _Progress
) -> tuple[int, list[str] | None]:
    rows = 0
    columns: list[str] | None = None
    for frame in _chunks(path, int(spec["chunk_rows"])):
        table = _output_frame(_predict(model, frame, path.name, rows), rows, path.name)
        if spec["write_output"]:
            if columns is None:
                columns = [str(c) for c in table.columns]
            elif [str(c) for c in table.columns] != columns:
                raise _FileError(
                    f"{path.name}, from row {rows + 1}: the model's output changed shape "
                    f"between chunks ({list(table.columns)} vs {columns})"
                )
            # The pandas writer (no pyarrow needed); "a" adds each chunk after the last.
            table.to_csv(part, mode="w" if rows == 0 else "a", header=False, index=False)
        rows += len(frame)
        progress.add(len(frame))
    return rows, columns


def _chunks(path: Path, chunk_rows: int):
    import pandas as pd

    is_csv = path.name.lower().endswith(CSV_SUFFIXES)
    rows_read = 0
    try:
        if is_csv:
            frames = pd.read_csv(path, chunksize=chunk_rows)
        else:
            frames = _parquet_chunks(path, chunk_rows)
        for frame in frames:
            rows_read += len(frame)
            yield frame
    except _FileError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        kind = "CSV" if is_csv else "Parquet"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"{path.name}: cannot be read as {kind}"
        if rows_read:
            where += f" after row {rows_read} (the rows before it were scored)"
        raise _FileError(f"{where}: {message}") from exc
    except Exception as exc:  # pyarrow's own errors, whatever its version calls them
        raise _FileError(f"{path.name}: cannot be read: {type(exc).__name__}: {exc}") from exc


def _parquet_chunks(path: Path, chunk_rows: int):
    # An import attempt, not importlib.util.find_spec: find_spec raises for a module that is
    # known to be missing (None in sys.modules) instead of saying so.
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is not None:
        for batch in pq.ParquetFile(str(path)).iter_batches(chunk_rows):
            yield batch.to_pandas()
        return
    try:
        import fastparquet  # noqa: F401 (pandas' other Parquet engine)
    except ImportError:
        raise _FileError(
            f"{path.name}: the model's environment has neither pyarrow nor fastparquet to read "
            "Parquet; give CSV, add pyarrow to the model's requirements, or use --env app."
        ) from None
    import pandas as pd

    yield pd.read_parquet(path, engine="fastparquet")  # whole file: it has no chunked reader


def _predict(model: Any, frame: Any, name: str, first: int) -> Any:
    span = f"{name}, rows {first + 1}-{first + len(frame)} (counted from 1, header excluded)"
    try:
        return model.predict(frame)
    except MemoryError:
        raise
    except Exception as exc:  # MLflow's schema checks and model code can raise anything
        message = getattr(exc, "message", None) or str(exc)
        raise _FileError(f"{span}: {type(exc).__name__}: {message}") from exc


def _output_frame(raw: Any, first_row: int, name: str) -> Any:
    """`row`, the prediction column(s), `file_name`, as `prediction.predictions_frame` names
    them in the app (its pandas calls exist in pandas 1.x to 3.x)."""
    import numpy as np
    import pandas as pd

    if isinstance(raw, pd.DataFrame):
        frame = raw.reset_index(drop=True)
    elif isinstance(raw, pd.Series):
        frame = raw.rename(raw.name or "prediction").reset_index(drop=True).to_frame()
    elif isinstance(raw, dict):
        frame = pd.DataFrame({k: list(np.asarray(v)) for k, v in raw.items()})
    else:
        array = np.asarray(raw)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.ndim == 2:
            frame = pd.DataFrame(array, columns=[f"prediction_{i}" for i in range(array.shape[1])])
        elif array.ndim == 1:
            frame = pd.DataFrame({"prediction": array})
        else:
            frame = pd.DataFrame({"prediction": list(array)})
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame.insert(0, ROW_COLUMN, np.arange(first_row, first_row + len(frame), dtype=np.int64))
    frame[FILE_COLUMN] = name
    return frame


# ----------------------------------------------------------------------------- bundles


def _script(spec: dict[str, Any]) -> Any:
    path = spec["script_path"]
    module = _LOADED.get(path)
    if module is None:
        # As an Azure batch deployment: the model folder in AZUREML_MODEL_DIR, init() once.
        os.environ["AZUREML_MODEL_DIR"] = spec["model_path"]
        loader = importlib.util.spec_from_file_location("batch_score", path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        for function in ("init", "run"):
            if not callable(getattr(module, function, None)):
                raise ValueError(f"The batch script has no {function}() function.")
        module.init()
        _LOADED[path] = module
    return module


def _run_script(
    spec: dict[str, Any], files: list[tuple[int, str]], progress: _Progress
) -> dict[str, Any]:
    import pandas as pd

    result = _script(spec).run([path for _, path in files])
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame({"result": list(result)})
    progress.add(len(frame))
    parts = []
    if spec["write_output"]:
        part = Path(spec["parts_dir"]) / f"{files[0][0]:06d}.csv"
        frame.to_csv(part, header=False, index=False)
        parts.append(
            {"positions": [p for p, _ in files], "columns": [str(c) for c in frame.columns],
             "rows": len(frame)}
        )
    if FILE_COLUMN in frame.columns:
        counts = frame[FILE_COLUMN].astype(str).value_counts().to_dict()
        rows = [int(counts.get(Path(path).name, 0)) for _, path in files]
    else:
        rows = [len(frame)] + [0] * (len(files) - 1)
    pairs = zip(files, rows, strict=True)
    outcomes = [{"position": p, "rows": n, "error": None} for (p, _), n in pairs]
    return {"files": outcomes, "parts": parts, "peak_rss_mb": _peak_rss_mb()}
