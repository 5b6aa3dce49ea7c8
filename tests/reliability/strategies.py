"""Generated request bodies: wrong types, NaN/inf, huge numbers, deep nesting, huge bodies,
invalid UTF-8, and bodies shaped like each accepted format so that the parser goes deep."""

from __future__ import annotations

import json

from hypothesis import strategies as st

HUGE_NUMBERS = (10**30, -(10**30), 2**63, 2**64, -(2**63) - 1, 10**400, 1e308, -1e308, 5e-324)
FORMAT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs", "input_data")

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "NaN", "inf", "1e999", "true", "\x00", "\ud800", "0x1F", "1,5"]),
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


def dumps(value: object) -> str:
    # allow_nan: NaN and Infinity literals are what MLflow's own writer emits.
    return json.dumps(value, allow_nan=True)


@st.composite
def shaped_bodies(draw, columns: tuple[str, ...]) -> dict:
    """A JSON object in one of the accepted formats, with the model's column names (some
    missing, some extra) and random values."""
    names = draw(
        st.lists(st.sampled_from(columns) | st.text(max_size=6), max_size=len(columns) + 2)
        if columns
        else st.lists(st.text(max_size=6), max_size=4)
    )
    if draw(st.booleans()) and columns:
        names = list(columns)
    rows = draw(st.lists(st.lists(leaves, min_size=0, max_size=len(names) + 1), max_size=4))
    numeric_rows = draw(
        st.lists(
            st.lists(
                st.floats(allow_nan=True, allow_infinity=True),
                min_size=len(names),
                max_size=len(names),
            ),
            max_size=4,
        )
    )
    table = {"columns": names, "data": draw(st.sampled_from([rows, numeric_rows]))}
    if draw(st.booleans()):
        table["index"] = draw(json_values)
    records = [dict(zip(names, row, strict=False)) for row in rows]
    tensor = draw(
        st.sampled_from(
            [
                numeric_rows,
                [[row[:8]] * 8 for row in numeric_rows],  # roughly (-1, 8, 8)
                [[[0.5] * 8] * 8] * draw(st.integers(0, 3)),
            ]
        )
    )
    key = draw(st.sampled_from(FORMAT_KEYS))
    value = {
        "dataframe_split": table,
        "dataframe_records": records,
        "instances": draw(st.sampled_from([records, tensor, rows])),
        "inputs": draw(st.sampled_from([tensor, {n: tensor for n in names}, rows])),
        "input_data": draw(st.sampled_from([table, tensor, {n: tensor for n in names}])),
    }[key]
    if draw(st.integers(0, 9)) == 0:
        value = draw(json_values)  # a wrong type under a right key
    body = {key: value}
    if draw(st.booleans()):
        body["params"] = draw(
            st.dictionaries(st.sampled_from(["threshold", "thresh", ""]), json_values, max_size=2)
            | json_values
        )
    if draw(st.integers(0, 14)) == 0:
        body[draw(st.sampled_from((*FORMAT_KEYS, "param", "extra")))] = draw(json_values)
    return body


def _nested(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + "1" + closer * depth


tricky_texts = st.one_of(
    st.builds(
        _nested, st.sampled_from([10, 500, 1100, 5000, 100_000]), st.sampled_from(["[", '{"a":'])
    ),
    st.builds(lambda d: '{"inputs": ' + _nested(d, "[") + "}", st.sampled_from([64, 1100, 50_000])),
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "null",
            "42",
            '"text"',
            "[]",
            "{}",
            "[[]]",
            '{"inputs": []}',
            '{"dataframe_split": {}}',
            '{"dataframe_records": [{}]}',
            "NaN",
            "[NaN, Infinity]",
            '{"inputs": [1e999]}',
            '{"inputs": [[1, 2], [3]]}',
            "a,b\n1",
            "a,b\n1,2,3\n",
            '{"inputs": ' + "9" * 5000 + "}",
            "\ufeff" + '{"inputs": [1]}',
            '{"inputs": [1]',
            '{"inputs": [1]}}',
            "\x00",
            '{"\x00": 1}',
        ]
    ),
    st.text(max_size=200),
)

raw_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b: b"\xef\xbb\xbf" + b, st.binary(max_size=100)),
    st.builds(lambda b: b"\x93NUMPY" + b, st.binary(max_size=200)),
    st.builds(lambda b: b"PAR1" + b, st.binary(max_size=200)),
    st.builds(lambda t: t.encode("utf-16"), st.text(max_size=50)),
    st.builds(lambda t: t.encode("latin-1", "replace") + b"\xff", st.text(max_size=50)),
)


def bodies(columns: tuple[str, ...]) -> st.SearchStrategy[bytes | str]:
    """Any body, as text or bytes."""
    texts = st.one_of(
        shaped_bodies(columns).map(dumps),
        json_values.map(dumps),
        tricky_texts,
    )
    return st.one_of(texts, texts.map(lambda t: t.encode("utf-8", "surrogatepass")), raw_bytes)
