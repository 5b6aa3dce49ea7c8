"""What a wrapper does: its kind and options, as frozen, picklable dataclasses.

The options travel to the prediction worker (pickled) and into the model (as JSON), and come
from the page's widgets or the CLI's `--options` JSON; `WrapSpec.options()` and
`spec_from_options` convert both ways. Constructing a spec only normalises it (widgets build
one on every rerun); `WrapSpec.validate()` says what is wrong, and the build step calls it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from deploystudio.errors import WrapError


class WrapperKind(StrEnum):
    PROBABILITIES = "proba"
    PRE_POST = "pre-post"
    PIPELINE = "pipeline"
    CUSTOM_CODE = "custom"


# pandas dtypes a column can be cast to before the model sees it.
CAST_TYPES: tuple[str, ...] = (
    "float64",
    "float32",
    "int64",
    "int32",
    "bool",
    "string",
    "datetime64[ns]",
)

# Steps an sklearn Pipeline puts in front of the fitted estimator. Each leaves clean input as it
# is (the estimator was trained without them), so the wrapped model predicts like the original
# on the data it was built for and also accepts what the steps repair.
PIPELINE_STEPS: dict[str, str] = {
    "impute-median": "Fill missing values with each column's median in the input example "
    "(fitted on the input example).",
    "impute-mean": "Fill missing values with each column's mean in the input example "
    "(fitted on the input example).",
    "impute-most-frequent": "Fill missing values with each column's most frequent value in the "
    "input example (fitted on the input example).",
    "impute-zero": "Fill missing values with 0.",
    "clip-outliers": "Clip each column to the range seen in the input example, so extreme "
    "values cannot push predictions beyond it (fitted on the input example).",
}


def _plain_mapping(value: Mapping | None, what: str) -> dict:
    """A plain dict with string keys (labels and column names are compared as strings)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WrapError(f"{what} must be a mapping, not {value!r}.")
    return {str(k): v for k, v in value.items()}


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    try:
        names = tuple(value or ())
    except TypeError:
        raise WrapError(f"{what} must be a list of column names, not {value!r}.") from None
    if not all(isinstance(n, str) and n for n in names):
        raise WrapError(f"{what} must be a list of non-empty column names.")
    return names


def _frozen_hash(instance: Any) -> int:
    # Frozen dataclasses hash their fields, and dicts do not hash: hash the JSON form instead.
    return hash(json.dumps(asdict(instance), sort_keys=True, default=str))


@dataclass(frozen=True)
class PreProcessing:
    """Steps applied to the input, in this order: rename, select, drop, fill, cast."""

    rename_columns: Mapping[str, str] = field(default_factory=dict)  # incoming -> expected name
    select_columns: tuple[str, ...] = ()  # keep only these, in this order (empty: keep all)
    drop_columns: tuple[str, ...] = ()
    fill_missing: Mapping[str, Any] = field(default_factory=dict)  # column -> value for NaN/None
    cast_types: Mapping[str, str] = field(default_factory=dict)  # column -> one of CAST_TYPES

    def __post_init__(self) -> None:
        # Copies: a caller changing its dict later must not change a frozen spec.
        for name in ("rename_columns", "fill_missing", "cast_types"):
            object.__setattr__(self, name, _plain_mapping(getattr(self, name), name))
        object.__setattr__(self, "select_columns", _names(self.select_columns, "Keep columns"))
        object.__setattr__(self, "drop_columns", _names(self.drop_columns, "Drop columns"))

    __hash__ = _frozen_hash

    def validate(self) -> None:
        rename = self.rename_columns
        if not all(isinstance(v, str) and v.strip() for v in rename.values()):
            raise WrapError("Each renamed column needs a new, non-empty name.")
        if len(set(rename.values())) != len(rename):
            raise WrapError("Two columns are renamed to the same name: give each its own.")
        unknown = sorted({str(t) for t in self.cast_types.values() if t not in CAST_TYPES})
        if unknown:
            raise WrapError(f"Cannot cast to {unknown}: choose from {', '.join(CAST_TYPES)}.")
        for column, value in self.fill_missing.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise WrapError(f"Give a value to fill missing values of '{column}' with.")

    @property
    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def to_options(self) -> dict[str, Any]:
        """The steps that are set, as JSON-able data."""
        return {
            f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)
        }


@dataclass(frozen=True)
class PostProcessing:
    """Steps applied to the original model's output."""

    label_map: Mapping[str, str] = field(default_factory=dict)  # label -> shown label
    threshold: float | None = None  # binary models: positive class when its probability >= this
    round_digits: int | None = None  # round numeric outputs
    add_confidence: bool = False  # a `confidence` column: the highest class probability

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_map", _plain_mapping(self.label_map, "label_map"))
        object.__setattr__(self, "add_confidence", bool(self.add_confidence))

    __hash__ = _frozen_hash

    def validate(self) -> None:
        threshold, digits = self.threshold, self.round_digits
        if threshold is not None and (
            not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0
        ):
            raise WrapError(f"The threshold must be a number between 0 and 1, not {threshold!r}.")
        if digits is not None and (
            not isinstance(digits, int) or isinstance(digits, bool) or not 0 <= digits <= 15
        ):
            raise WrapError(f"Round to a whole number of digits from 0 to 15, not {digits!r}.")

    @property
    def is_empty(self) -> bool:
        return self == PostProcessing()

    @property
    def needs_probabilities(self) -> bool:
        return self.threshold is not None or self.add_confidence

    def to_options(self) -> dict[str, Any]:
        defaults = PostProcessing()
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(defaults, f.name)
        }


@dataclass(frozen=True)
class WrapSpec:
    """One wrapper: its kind and the options that kind uses (the others are ignored)."""

    kind: WrapperKind
    pre: PreProcessing = field(default_factory=PreProcessing)
    post: PostProcessing = field(default_factory=PostProcessing)
    pipeline_steps: tuple[str, ...] = ()  # keys of PIPELINE_STEPS, in order
    custom_code: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", WrapperKind(self.kind))
        except ValueError:
            kinds = ", ".join(k.value for k in WrapperKind)
            raise WrapError(f"Unknown wrapper kind '{self.kind}': choose {kinds}.") from None
        steps = _names(self.pipeline_steps, "Pipeline steps")
        object.__setattr__(self, "pipeline_steps", steps)

    __hash__ = _frozen_hash

    def validate(self) -> None:
        """WrapError naming the first option that cannot be built."""
        unknown = [s for s in self.pipeline_steps if s not in PIPELINE_STEPS]
        if unknown:
            raise WrapError(
                f"Unknown pipeline steps {unknown}: choose from {', '.join(PIPELINE_STEPS)}."
            )
        if len(set(self.pipeline_steps)) != len(self.pipeline_steps):
            raise WrapError("Each pipeline step can be used once.")
        if self.kind is WrapperKind.PIPELINE and not self.pipeline_steps:
            raise WrapError("Choose at least one pipeline step.")
        if self.kind is WrapperKind.PRE_POST and self.pre.is_empty and self.post.is_empty:
            raise WrapError("Choose at least one pre- or post-processing step.")
        if self.kind is WrapperKind.CUSTOM_CODE and not self.custom_code.strip():
            raise WrapError("Write the wrapper's code (start from the template).")
        if self.kind in (WrapperKind.PROBABILITIES, WrapperKind.PRE_POST):
            self.pre.validate()
        if self.kind is WrapperKind.PRE_POST:
            self.post.validate()

    def options(self) -> dict[str, Any]:
        """The options this kind uses, as JSON-able data (the lineage tag's value)."""
        if self.kind is WrapperKind.PIPELINE:
            return {"pipeline_steps": list(self.pipeline_steps)}
        if self.kind is WrapperKind.CUSTOM_CODE:
            code = self.custom_code.encode()
            return {
                "code_sha256": hashlib.sha256(code).hexdigest(),
                "code_lines": len(self.custom_code.splitlines()),
            }
        options: dict[str, Any] = {}
        if not self.pre.is_empty:
            options["pre"] = self.pre.to_options()
        if self.kind is WrapperKind.PRE_POST and not self.post.is_empty:
            options["post"] = self.post.to_options()
        return options


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def spec_from_options(kind: str, options: Mapping[str, Any], custom_code: str = "") -> WrapSpec:
    """A WrapSpec from the JSON shape `WrapSpec.options()` writes: {"pre": {...}, "post": {...},
    "pipeline_steps": [...]}. Unknown keys are refused, so a typo is not silently ignored."""
    if not isinstance(options, Mapping):
        raise WrapError('Options must be a JSON object such as {"pre": {...}, "post": {...}}.')
    unknown = set(options) - {"pre", "post", "pipeline_steps"}
    if unknown:
        raise WrapError(f"Unknown options {sorted(unknown)}: use pre, post and pipeline_steps.")
    spec = WrapSpec(
        kind=kind,
        pre=_dataclass_from(PreProcessing, options.get("pre", {}), "pre"),
        post=_dataclass_from(PostProcessing, options.get("post", {}), "post"),
        pipeline_steps=_names(options.get("pipeline_steps", ()), "pipeline_steps"),
        custom_code=custom_code,
    )
    spec.validate()
    return spec


def _dataclass_from(cls: type, values: Any, what: str) -> Any:
    if not isinstance(values, Mapping):
        raise WrapError(f'"{what}" must be a JSON object.')
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise WrapError(
            f'Unknown "{what}" options {sorted(unknown)}: use {", ".join(sorted(names))}.'
        )
    return cls(**values)
