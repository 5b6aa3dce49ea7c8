"""Generated payloads against the parser and against a real endpoint front.

Every body ends as parsed model input or a DeployStudioError with a message; over HTTP, every
answer carries x-request-id and none is a 5xx (the model's refusals are 4xx).
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.models import Model

from deploystudio.errors import DeployStudioError
from deploystudio.payload_formats import ModelInput, PayloadFormat
from deploystudio.payloads import DEFAULT_MAX_BYTES, parse_payload
from deploystudio.prediction import local_model_path
from tests.reliability.conftest import examples
from tests.reliability.figures import FIGURES
from tests.reliability.front_setup import MAX_BODY, FrontSetup, running_front
from tests.reliability.strategies import bodies
from tests.test_front import Answer, Client

DEMO_MODELS = (
    "iris-classifier/1",
    "diabetes-regressor/1",
    "wine-no-signature/1",
    "cancer-risk-scorer/1",
    "digits-tensor/1",
)
FILENAMES = (None, "body.json", "table.csv", "array.npy", "table.parquet", "x.npz", "noext")
PARSE_SUITE = "payload parse"
# Hypothesis warns when it prints a 100 kB body (the deep-nesting cases); that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@pytest.fixture(scope="module")
def signatures(settings, registry, seeded):
    found = {}
    for name in DEMO_MODELS:
        path = local_model_path(f"models:/{name}", settings, registry)
        found[name] = Model.load(path).signature
    return found


def column_names(signature) -> tuple[str, ...]:
    if signature is None or not signature.inputs.has_input_names():
        return ()
    return tuple(signature.inputs.input_names())


def check_outcome(call) -> ModelInput | DeployStudioError:
    """Run `call`; a ModelInput or a DeployStudioError with a message is fine, anything else is
    a crash (counted, then raised so that hypothesis shrinks it)."""
    FIGURES.add(PARSE_SUITE, "cases tried")
    try:
        result = call()
    except DeployStudioError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return exc
    except Exception:
        FIGURES.add(PARSE_SUITE, "crashes")
        raise
    assert isinstance(result, ModelInput)
    return result


@pytest.mark.parametrize("model", DEMO_MODELS)
def test_generated_payloads_parse_or_say_why(model, signatures, request):
    FIGURES.measured(PARSE_SUITE, "cases tried", "crashes")
    signature = signatures[model]
    schemas = [signature, None] + ([signature.inputs] if signature is not None else [])

    @examples(default=60, long=500)
    @given(
        body=bodies(column_names(signature)),
        schema=st.sampled_from(schemas),
        payload_format=st.none() | st.sampled_from(list(PayloadFormat)),
        filename=st.sampled_from(FILENAMES),
        max_bytes=st.sampled_from([DEFAULT_MAX_BYTES, 4096]),
    )
    def run(body, schema, payload_format, filename, max_bytes):
        check_outcome(
            lambda: parse_payload(body, schema, payload_format, filename, max_bytes=max_bytes)
        )

    run()


def test_a_body_over_the_limit_is_refused_before_it_is_read(signatures):
    body = b'{"inputs": [' + b"1," * (DEFAULT_MAX_BYTES // 2) + b"1]}"
    started = time.monotonic()
    outcome = check_outcome(lambda: parse_payload(body, signatures["digits-tensor/1"]))
    assert isinstance(outcome, DeployStudioError)
    assert "over the limit" in str(outcome)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,  # found by the fuzz: RecursionError in json
        '{"inputs": ' + "9" * 5000 + "}",  # found by the fuzz: ValueError, int digits limit
    ],
    ids=["deep-nesting", "5000-digit-integer"],
)
def test_inputs_the_fuzz_found_are_payload_errors(body, signatures):
    outcome = check_outcome(lambda: parse_payload(body, signatures["digits-tensor/1"]))
    assert isinstance(outcome, DeployStudioError)


def test_a_nan_in_a_double_column_parses_and_text_in_it_is_named(signatures):
    signature = signatures["iris-classifier/1"]
    names = column_names(signature)
    nan_row = json.dumps({"dataframe_split": {"columns": names, "data": [[float("nan")] * 4]}})
    assert isinstance(check_outcome(lambda: parse_payload(nan_row, signature)), ModelInput)
    text_row = json.dumps({"dataframe_split": {"columns": names, "data": [["abc"] * 4]}})
    outcome = check_outcome(lambda: parse_payload(text_row, signature))
    assert isinstance(outcome, DeployStudioError)


# -- over HTTP, through a real front ---------------------------------------------------------

FRONT_SUITE = "payload front"
CONTENT_TYPES = (
    "application/json",
    "text/plain",
    "text/csv",
    "application/octet-stream",
    "",
    "x/y",
    "application/json; charset=latin-1",
)


@pytest.fixture(scope="module")
def front(settings, registry, seeded, tmp_path_factory):
    FIGURES.measured(
        FRONT_SUITE, "cases tried", "crashes", "5xx", "orphan processes", "leaked ports"
    )
    with running_front(settings, registry, tmp_path_factory.mktemp("fuzz-front"), FRONT_SUITE) as s:
        yield s


def post(
    client: Client, front: FrontSetup, body: bytes, content_type: str | None, key: str | None
) -> Answer:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    FIGURES.add(FRONT_SUITE, "cases tried")
    answer = client.request("POST", "/score", body, headers)
    # A 424 is the front's word for a model server that failed (answered 5xx or died): for a bad
    # body, our no-code script must answer 4xx itself, so both count as 5xx here.
    if answer.status >= 500 or answer.status == 424:
        FIGURES.add(FRONT_SUITE, "5xx")
    return answer


def test_the_front_answers_generated_bodies_without_a_5xx(front, signatures):
    client = Client(front.port)
    names = column_names(signatures["iris-classifier/1"])
    try:

        @examples(default=100, long=2000)
        @given(
            body=bodies(names),
            content_type=st.none() | st.sampled_from(CONTENT_TYPES),
            key_kind=st.sampled_from(["right", "right", "none", "wrong"]),
        )
        def run(body, content_type, key_kind):
            # The key itself is never a drawn value: a failure report must not print it.
            key = {"right": front.key, "none": None, "wrong": "wrong"}[key_kind]
            data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
            answer = post(client, front, data, content_type, key)
            assert answer.headers.get("x-request-id"), answer
            assert answer.status < 500 and answer.status != 424, (
                answer.status,
                answer.headers,
                answer.body[:500],
            )
            if key != front.key:
                assert answer.status == 401

        run()
        assert front.count_crashes(FRONT_SUITE) == 0
        # The front and its server still score a good body after all that.
        good = post(client, front, json.dumps(front.body).encode(), "application/json", front.key)
        assert good.status == 200, good
    finally:
        client.close()


def test_a_deeply_nested_body_is_a_400_from_the_no_code_script(front):
    """Found by the fuzz: json.loads in the scoring script raised RecursionError, a 500."""
    client = Client(front.port)
    try:
        body = ('{"input_data": ' + "[" * 50_000 + "]" * 50_000 + "}").encode()
        answer = post(client, front, body, "application/json", front.key)
    finally:
        client.close()
    assert answer.status == 400, answer
    assert "nested too deeply" in answer.body.decode()


def test_an_oversize_body_is_a_413_with_a_request_id(front):
    client = Client(front.port)
    try:
        body = b"[" + b"1," * (MAX_BODY // 2 + 10) + b"1]"
        answer = post(client, front, body, "application/json", front.key)
    finally:
        client.close()
    assert answer.status == 413 and answer.headers.get("x-request-id")
