"""Run a batch scoring script as an Azure ML batch deployment does: init(), then run(mini_batch).

`validate_batch_script` runs this in a child process (model code never runs in the app):
    python -m deploystudio.customization.batch_driver SCRIPT RESULT_JSON FILE [FILE...]
It prints a marker before each step, so that the parent can tell which step failed, and writes
run()'s result as a split-oriented JSON table.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

STAGE_MARKER = "deploystudio-batch-stage:"
MISSING_FUNCTION_EXIT = 3


def _stage(name: str) -> None:
    print(f"{STAGE_MARKER} {name}", flush=True)


def main(argv: list[str]) -> int:
    script, result_path, files = argv[0], Path(argv[1]), argv[2:]
    _stage("import")
    spec = importlib.util.spec_from_file_location("batch_score", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("init", "run"):
        if not callable(getattr(module, name, None)):
            _stage(f"missing-{name}")
            return MISSING_FUNCTION_EXIT
    _stage("init")
    module.init()
    _stage("run")
    result = module.run(files)
    _stage("done")
    # Azure ML's append_row output takes a DataFrame or a list (one row per element).
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame({"result": list(result)})
    result_path.write_text(frame.to_json(orient="split", index=False, default_handler=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
