"""What model code may see of the app: the environment passed to every process that runs it.

An allow list, not a block list: a block list misses every secret whose name it did not foresee
(`DATABASE_URL`, `GH_PAT`, `SENTRY_DSN`, `SSH_AUTH_SOCK`, a `PIP_INDEX_URL` or a
`MLFLOW_REGISTRY_URI` with a password in it). Model code gets the search path, the locale, the
time zone, thread counts for numeric libraries, HOME and TMPDIR pointing at its own folders, and
the variables its server needs, which callers pass as `extra` (the AZUREML_* the inference
server's launcher would set, MLflow's scoring-server variables, the ones a user named for a
deployment). The file-system barrier is `deploystudio.worker.sandbox`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        # Threads of numeric libraries (BLAS, OpenMP, numexpr): how many cores model code uses.
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "NUMEXPR_MAX_THREADS",
        # Set on processors where older OpenBLAS builds compute wrong results or crash: a model's
        # numpy needs them as much as the app's does.
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
    }
)
ALLOWED_PREFIXES = ("LC_",)


def is_allowed(name: str) -> bool:
    """Whether a variable of the app's environment is passed to model code."""
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def scrubbed_environment(
    environ: Mapping[str, str] | None = None,
    *,
    home: Path | None = None,
    temp: Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a process that runs model code: the allowed variables of `environ`
    (default: this process's), HOME set to `home` and TMPDIR to `temp` when given (HOME is left
    out otherwise: the user's home is not the model's), then `extra`."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if is_allowed(name)}
    if home is not None:
        env["HOME"] = str(home)
    if temp is not None:
        env["TMPDIR"] = str(temp)
    env.update(extra or {})
    return env
