"""Errors of a model's own code caused by a missing credential or an unreachable service say so
instead of blaming the input (issue 19, part 5)."""

from __future__ import annotations

import socket

import mlflow
import pandas as pd
import pytest

from deploystudio.errors import PredictionError
from deploystudio.payloads import ModelInput
from deploystudio.worker.model_errors import external_cause
from deploystudio.worker.process import PredictionWorker

OPENAI_NO_KEY = (
    "The api_key client option must be set either by passing api_key to the client or by "
    "setting the OPENAI_API_KEY environment variable"
)
CODE = f'''
import mlflow
from mlflow.pyfunc import PythonModel

class NeedsAKey(PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError({OPENAI_NO_KEY!r})

mlflow.models.set_model(NeedsAKey())
'''


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError(OPENAI_NO_KEY), "credential"),
        (PermissionError("401 Unauthorized"), "credential"),
        (ConnectionRefusedError(111, "Connection refused"), "could not reach"),
        (socket.gaierror(-2, "Name or service not known"), "could not reach"),
        (TimeoutError("timed out"), "could not reach"),
        (RuntimeError("Error code: 401 - invalid key"), "credential"),
        (PermissionError(13, "Permission denied"), None),  # the sandbox's answer: not a key
        (KeyError("petal_width"), None),
        (ValueError("could not convert string to float: 'abc'"), None),
    ],
)
def test_external_cause(exc, expected):
    said = external_cause(exc)
    assert (said is None) if expected is None else (expected in said)


def test_a_missing_key_in_model_code_is_said_through_the_worker(tmp_path):
    code = tmp_path / "needs_a_key.py"
    code.write_text(CODE)
    model = tmp_path / "model"
    mlflow.pyfunc.save_model(str(model), python_model=str(code))
    worker = PredictionWorker(tmp_path / "worker.log")
    try:
        with pytest.raises(PredictionError) as caught:
            worker.predict(model, ModelInput(data=pd.DataFrame({"x": [1]})))
    finally:
        worker.stop()
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message and "needs a credential" in message
    assert "The input is not the cause" in message
    assert "refused these values" not in message
