"""Import what the first pages need once, when the server starts, instead of in the first
visitor's page run.

Measured on a 2-core machine: `components.services` (MLflow, pandas) takes 2.1 s to import and
the Overview's extras (plotly, the batch jobs) 1.4 s more. Imported lazily, the first open of `/`
kept its main area blank for those seconds with nothing saying why. `studio.py` starts this at
server start-up, overlapping the server's start and the browser's first load; app.py waits for
it under a spinner (so no page runs while another thread is half-way through importing the
same modules, and the wait shows).

The module list is read from the pages' own import lines, so it stays current as pages change.
"""

from __future__ import annotations

import ast
import importlib
import logging
import threading
from pathlib import Path

VIEWS = Path(__file__).resolve().parent.parent / "views"
# The pages a session usually opens first; the others (Azure's SDK among them) load on demand.
FIRST_PAGES = ("overview.py", "browse.py", "inspect.py", "predict.py", "endpoints.py")
log = logging.getLogger(__name__)

_done = threading.Event()
_started = threading.Event()


def page_imports(pages: tuple[str, ...] = FIRST_PAGES) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names imported from it) for each top-level import of the pages, in order."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for page in pages:
        tree = ast.parse((VIEWS / page).read_text(), filename=page)
        for node in tree.body:
            if isinstance(node, ast.Import):
                found.extend((alias.name, ()) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def _import_all() -> None:
    try:
        for name, names in page_imports():
            module = importlib.import_module(name)
            for attribute in names:
                # `from components import services` names a submodule: import it too.
                if not hasattr(module, attribute):
                    importlib.import_module(f"{name}.{attribute}")
    except Exception:  # a page importing it would fail the same way, and say it better
        log.exception("Warming up the pages' imports failed; pages will import on first use.")
    finally:
        _done.set()


def start() -> None:
    """Import the first pages' modules in a background thread (once per process)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_import_all, name="deploystudio-warmup", daemon=True).start()


def pending() -> bool:
    """True while a started warm-up is still importing."""
    return _started.is_set() and not _done.is_set()


def wait(timeout_seconds: float = 120) -> None:
    _done.wait(timeout_seconds)
