"""Test only: let a browser test put a fake Azure transport into the app's server process.

Why this exists: the Chromium tests run `streamlit run studio.py` in another process, where a
test cannot monkeypatch anything, and Azure is unreachable from the test machine. The AppTests
use `components.services.connection_for_tests`; a browser test needs the same thing through the
environment. Two variables, both required:

- DEPLOYSTUDIO_TEST_AZURE_CONNECTION = "package.module:function", a function taking an
  `AzureWorkspace` and returning the (credential, azure-core HttpTransport) pair to use;
- DEPLOYSTUDIO_TESTING = "1", the explicit test flag. Without it the first variable is refused
  (an error, never silently ignored nor obeyed), so a stray variable in production cannot route
  Azure calls (and the tokens they carry) to arbitrary code.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from deploystudio.errors import AzureConnectionError

CONNECTION_VARIABLE = "DEPLOYSTUDIO_TEST_AZURE_CONNECTION"
TEST_FLAG_VARIABLE = "DEPLOYSTUDIO_TESTING"

ConnectionFactory = Callable[[Any], tuple[Any, Any]]


def connection_factory(environ: Mapping[str, str] | None = None) -> ConnectionFactory | None:
    """The test's connection factory, or None when none is set (the app's normal case).

    Raises AzureConnectionError when one is set without the test flag, or cannot be loaded.
    """
    env = os.environ if environ is None else environ
    spec = env.get(CONNECTION_VARIABLE, "").strip()
    if not spec:
        return None
    if env.get(TEST_FLAG_VARIABLE) != "1":
        raise AzureConnectionError(
            f"{CONNECTION_VARIABLE} is set but {TEST_FLAG_VARIABLE} is not 1: a fake Azure "
            f"transport is for tests only. Unset {CONNECTION_VARIABLE}."
        )
    module_name, _, function_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise AzureConnectionError(
            f"{CONNECTION_VARIABLE}={spec!r} names no function (module:function): {exc}"
        ) from exc
    if not callable(factory):
        raise AzureConnectionError(f"{CONNECTION_VARIABLE}={spec!r} is not a function.")
    return factory
