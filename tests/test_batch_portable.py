"""The portable batch scorer (what batch workers run in a model's own environment) where the
environment has no pyarrow: CSV still scores, through pandas' own CSV
writer, and a Parquet file fails alone with a message that says why (issue 19, part 4). The
model's old-stack environment is tested in test_batch_model_environment.py; here the two
package is hidden from the scorer's own imports in a real Python process (MLflow 2 and 3 both
depend on it, so no model environment built here lacks it, and this app's MLflow needs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
from sklearn.linear_model import LogisticRegression

HIDDEN = """
import builtins, json, sys
from deploystudio.deployment.batch import portable
real_import = builtins.__import__

def without_pyarrow(name, globals=None, *args, **kwargs):
    # The scorer's own imports of pyarrow fail, as in an environment without it; MLflow's and
    # pandas' (which need it in this app environment) go through.
    if name.split(".")[0] == "pyarrow" and (globals or {}).get("__name__") == portable.__name__:
        raise ImportError(f"No module named {name!r}")
    return real_import(name, globals, *args, **kwargs)

builtins.__import__ = without_pyarrow
spec = json.loads(sys.argv[1])
portable.prepare(spec)
report = portable.score_mini_batch(spec, [tuple(f) for f in json.loads(sys.argv[2])])
print(json.dumps(report))
"""


def test_without_pyarrow_csv_scores_and_parquet_says_why(tmp_path: Path):
    frame = pd.DataFrame({"a": [0.0, 1.0, -1.0, 2.0], "b": [0.5, -2.0, 1.0, 0.0]})
    model = LogisticRegression().fit(frame, [0, 1, 0, 1])
    mlflow.sklearn.save_model(model, tmp_path / "model")
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    spec = {
        "model_path": str(tmp_path / "model"), "script_path": None, "chunk_rows": 3,
        "write_output": True, "parts_dir": str(parts), "progress_path": str(tmp_path / "p"),
        "native_threads": 1,
    }
    files = [[0, str(tmp_path / "in.csv")], [1, str(tmp_path / "in.parquet")]]
    done = subprocess.run(
        [sys.executable, "-c", HIDDEN, json.dumps(spec), json.dumps(files)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    csv_file, parquet_file = report["files"]
    assert csv_file == {"position": 0, "rows": 4, "error": None}
    assert parquet_file["rows"] == 0 and "neither pyarrow nor fastparquet" in parquet_file["error"]
    assert report["parts"] == [
        {"positions": [0], "columns": ["row", "prediction", "file_name"], "rows": 4}
    ]
    # Two chunks (3 rows, then 1) in one part, rows counted across them, no header.
    lines = (parts / "000000.csv").read_text().splitlines()
    expected = model.predict(frame).tolist()
    assert lines == [f"{i},{expected[i]},in.csv" for i in range(4)]
    assert (tmp_path / "p").read_text() == "4"
