"""Prediction events: the contract, validation, redaction of identifiers, and SLA statistics.

A serving process (through `orchestrator.prediction_logger`) or a batch of existing logs (through
`orchestrator.telemetry_ingest`) hands raw events to `validate_batch`, which returns the rows
that meet the contract, in the stored shape, and the rows that do not, with every problem named.
Identifiers are stored only as keyed hashes and personal data is dropped before anything is
written; no message or reason ever carries a raw value, since any value may be personal data.

Raw input uses the stored names, except that the subject arrives as `subject_id` and each
declared identifier under its own name; features and segments come flat (`feature.x`,
`segment.y`) or nested (`features` / `segments` objects).
"""

import datetime as dt
import hashlib
import itertools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from orchestrator.core.errors import ConfigError, DataError
from orchestrator.core.gates import GateResult, GateVerdict
from orchestrator.core.spec import EVENT_FIELDS, FeatureKind, MonitoredModelSpec, SLAPolicy

SCHEMA_VERSION = 1
STATUSES = ("ok", "error", "timeout")
NO_FALLBACK = "none"
TIMESTAMP = pa.timestamp("us", tz="UTC")
MIN_KEY_BYTES = 16
# The demo's key, published here on purpose: it protects nothing and only lets the demo run
# without setup. Anything that writes real events needs its own key in the environment.
DEMO_KEY = b"driftgate-demo-telemetry-key-not-a-secret"

_REQUIRED = ("model_version", "timestamp", "request_id", "latency_ms", "status")
_HEAD = (
    ("schema_version", pa.int16(), False),
    ("model_name", pa.string(), False),
    ("model_version", pa.string(), False),
    ("environment", pa.string(), False),
    ("timestamp", TIMESTAMP, False),
    ("request_id", pa.string(), False),
    ("trace_id", pa.string(), True),
    ("latency_ms", pa.float64(), False),
    ("status", pa.string(), False),
    ("fallback", pa.string(), False),
    ("subject_hash", pa.string(), True),
)
_NESTED = {"features": "feature", "segments": "segment"}
# The contract's input fields that carry one value each (subject_hash is computed, never sent).
_SCALAR_INPUTS = tuple(f for f in EVENT_FIELDS if f != "subject_hash" and f not in _NESTED)
# Markers in string columns built from Python values, for what no plain value stands for, so
# that the rule of the value's field decides; none can be a real value (each starts with NUL).
_MARK = "\x00driftgate:"
_INVALID = _MARK + "not-a-scalar"  # a dict, a list, bytes, a UUID...: no field takes it
_NAIVE = _MARK + "naive-timestamp"  # a datetime without a zone
_TRUE, _FALSE = _MARK + "true", _MARK + "false"  # a bool among values of other kinds
_RECORDS_METADATA = b"driftgate.records"

# A field name is shown (in quarantine, in messages) only if it reads as a name: a data file's
# header or a client's dict key can be anything, an e-mail address included.
_SHOWN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")
HIDDEN_NAME = "unknown field (name not shown: not an identifier)"

_NUMERIC_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_AWARE_RE = (
    r"^\s*\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)\s*$"
)
_NAIVE_RE = r"^\s*\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?)?\s*$"
_NAN_RE = r"^\s*[+-]?nan\s*$"
_MAX_EPOCH_SECONDS = 1e11  # year ~5000: beyond it the number is milliseconds, not seconds
# The plausible-time rule: an event happened between these bounds, the later one read at
# validation time. Earlier is a unit or clock error (epoch 0, a default date); later, a clock
# far ahead. Either would file the event under a day it does not belong to.
EARLIEST_EVENT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
FUTURE_SLACK = dt.timedelta(days=1)


# --- the contract ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventSchema:
    """The prediction-event contract of one monitored model, as stored columns."""

    model: str
    environment: str
    task: str
    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    segments: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    pii: tuple[str, ...] = ()
    feature_order: tuple[str, ...] = ()  # spec order; numerical then categorical when empty

    def __post_init__(self) -> None:
        if not self.feature_order:
            object.__setattr__(self, "feature_order", self.numerical + self.categorical)

    @classmethod
    def from_spec(cls, spec: MonitoredModelSpec) -> "EventSchema":
        return cls(
            model=spec.name,
            environment=spec.telemetry.environment,
            task=spec.performance.task,
            numerical=tuple(f.name for f in spec.features if f.kind is FeatureKind.NUMERICAL),
            categorical=tuple(f.name for f in spec.features if f.kind is FeatureKind.CATEGORICAL),
            segments=tuple(spec.segments),
            identifiers=tuple(spec.telemetry.identifiers),
            pii=tuple(spec.telemetry.pii),
            feature_order=tuple(spec.feature_names),
        )

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The stored columns, in order; the required ones are not nullable."""
        fields = [pa.field(name, kind, nullable=nullable) for name, kind, nullable in _HEAD]
        fields += [pa.field(f"{name}_hash", pa.string()) for name in self.identifiers]
        fields += [pa.field(f"segment.{name}", pa.string()) for name in self.segments]
        fields += [
            pa.field(
                f"feature.{name}",
                pa.float64() if name in self.numerical else pa.string(),
            )
            for name in self.feature_order
        ]
        fields += [pa.field("prediction", pa.float64()), pa.field("score", pa.float64())]
        return pa.schema(fields)

    @cached_property
    def rejected_schema(self) -> pa.Schema:
        """Quarantined rows: where they were and why they were refused, then the stored columns
        that are safe to keep (identifiers hashed, personal data dropped, unknown fields gone);
        a value that could not be read as its type is null."""
        head = [
            pa.field("row", pa.int64(), nullable=False),
            pa.field("field", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
        ]
        return pa.schema(head + [f.with_nullable(True) for f in self.arrow_schema])

    @cached_property
    def input_fields(self) -> frozenset[str]:
        """Every field a raw event may carry."""
        return frozenset(
            [*_SCALAR_INPUTS, *self.identifiers, *self.pii, *_NESTED]
            + [f"segment.{name}" for name in self.segments]
            + [f"feature.{name}" for name in self.feature_order]
        )


@dataclass(frozen=True)
class Problem:
    """One broken rule of one event; never carries the value, which may be personal data."""

    row: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"field {self.field}" if self.row is None else f"row {self.row}, field {self.field}"
        return f"{where}: {self.reason}"


class ContractError(DataError):
    """Events do not meet the prediction-event contract; `problems` names each broken rule."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:20])
        more = f"; and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"prediction event(s) rejected: {shown}{more}")


@dataclass(frozen=True)
class BatchResult:
    """`valid` in `EventSchema.arrow_schema`, `rejected` in `EventSchema.rejected_schema`."""

    valid: pa.Table
    rejected: pa.Table


# --- keys and redaction ----------------------------------------------------------------------


def resolve_key(env_name: str, *, demo: bool = False) -> bytes:
    """The HMAC key in `$env_name`, read when called: at least 16 bytes.

    `demo=True` returns DEMO_KEY (public, protects nothing) only when the variable is unset.
    """
    value = os.environ.get(env_name)
    if value is None:
        if demo:
            return DEMO_KEY
        raise ConfigError(
            f"${env_name} is not set: prediction events need a secret key of at least "
            f"{MIN_KEY_BYTES} bytes to hash identifiers (telemetry.hmac_key_env)"
        )
    key = value.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"${env_name} is shorter than {MIN_KEY_BYTES} bytes; use a longer random secret"
        )
    return key


def check_key(key: bytes) -> bytes:
    """A key given directly (not through the environment), held to the same rule: bytes, at
    least 16 of them; the error never shows the key."""
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the telemetry HMAC key must be at least {MIN_KEY_BYTES} bytes; "
            "use a longer random secret"
        )
    return bytes(key)


class Redactor:
    """Keyed hashes (HMAC-SHA256, hex) of identifiers, so that the same person has the same
    hash under one key and cannot be found again without it."""

    _BLOCK = 64  # SHA-256 block size

    def __init__(self, key: bytes):
        if not isinstance(key, bytes | bytearray) or not key:
            raise ConfigError("the telemetry HMAC key must be non-empty bytes")
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        key = bytes(key).ljust(self._BLOCK, b"\0")
        # HMAC's inner and outer pads hashed once: each value then costs two copies and two
        # short updates, about twice as fast as hmac.new per value. The key itself is not kept.
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __repr__(self) -> str:
        return "Redactor(<key hidden>)"

    def hash_value(self, value: str | bytes) -> str:
        return self._digest(value.encode() if isinstance(value, str) else value)

    def hash_array(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Hex digests of string values; nulls stay null. Each distinct value is hashed once."""
        array = _decoded(_combine(values))
        if not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        if len(array) == 0:
            return pa.array([], pa.string())
        encoded = array.dictionary_encode()
        distinct = encoded.dictionary.cast(pa.binary()).to_pylist()
        hashed = pa.array([self._digest(v) for v in distinct], pa.string())
        return hashed.take(encoded.indices)

    def _digest(self, data: bytes) -> str:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


# --- Python objects to Arrow -----------------------------------------------------------------

_NONE = type(None)
_PLAIN = {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}
_EXACT_FLOAT_INT = 2**53  # beyond it a float no longer holds every integer
_EMPTY: Mapping = {}
_NOT_A_MAPPING = object()


def column_from_values(values: Sequence, *, timestamps: bool = False) -> pa.Array:
    """An Arrow column from Python values of one field, whatever they are.

    Arrow never infers a type from the client's objects (its inference crashes the process on
    some mixes of numpy scalars): each value is first made a plain str, int, float, bool or
    None here, and the column is built with an explicit type. Values of mixed kinds become
    text (each field's rule parses it); anything else becomes a marker its field's rule
    rejects. With `timestamps`, an aware datetime becomes epoch seconds and a naive one a
    "no time zone" marker, so that each row is judged on its own value.
    """
    values = list(values)
    kinds = set(map(type, values))
    if not kinds <= _PLAIN.keys() | {_NONE}:
        values = [_plain(v, timestamps) for v in values]
        kinds = set(map(type, values))
    kinds.discard(_NONE)
    try:
        return _typed(values, kinds)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        # A string UTF-8 cannot encode (a lone surrogate, which JSON allows): only it is refused.
        return pa.array([_encodable(v) for v in _texts(values)], pa.string())


def _plain(value: object, timestamps: bool) -> object:
    """`value` as a plain scalar or None, or the marker its field's rule rejects."""
    if isinstance(value, np.generic) and not isinstance(value, np.datetime64 | np.timedelta64):
        value = value.item()  # the Python value a numpy scalar holds (np.str_ included)
    if value is None or type(value) in _PLAIN:
        return value
    if value is pd.NaT or value is pd.NA:  # pandas' missing values
        return None
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # int subclasses (IntEnum); bool cannot be subclassed
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, dt.datetime | np.datetime64):
        return _instant(value) if timestamps else _INVALID
    return _INVALID


def _instant(value: dt.datetime | np.datetime64) -> float | str | None:
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else _NAIVE  # numpy datetimes carry no zone
    try:
        return _NAIVE if value.utcoffset() is None else value.timestamp()
    except Exception:  # a client's tzinfo can raise anything: the value is then unusable
        return _INVALID


def _typed(values: list, kinds: set[type]) -> pa.Array:
    if not kinds:
        return pa.nulls(len(values))
    if len(kinds) == 1:
        (kind,) = kinds
        try:
            return pa.array(values, _PLAIN[kind])
        except (OverflowError, pa.ArrowInvalid):
            if kind is not int:
                raise
    elif kinds == {int, float} and all(
        -_EXACT_FLOAT_INT <= v <= _EXACT_FLOAT_INT for v in values if type(v) is int
    ):
        return pa.array(values, pa.float64())
    # Mixed kinds, or integers beyond int64 or a float's exact range: text, so that an
    # identifier keeps the integer's exact digits and each field's rule parses the rest.
    return pa.array(_texts(values), pa.string())


def _texts(values: list) -> list[str | None]:
    """Plain values as the text Arrow's cast gives them (floats formatted by Arrow itself, so
    that an identifier hashes the same whatever else its batch holds); bools as markers."""
    floats = [v for v in values if type(v) is float]
    formatted = iter(pa.array(floats, pa.float64()).cast(pa.string()).to_pylist())
    texts: list[str | None] = []
    for value in values:
        kind = type(value)
        if value is None or kind is str:
            texts.append(value)
        elif kind is bool:
            texts.append(_TRUE if value else _FALSE)
        elif kind is float:
            texts.append(next(formatted))
        else:
            texts.append(_digits(value))
    return texts


def _digits(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than Python converts (sys.set_int_max_str_digits)
        return _INVALID


def _encodable(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        text.encode()
    except UnicodeEncodeError:
        return _INVALID
    return text


def _as_mapping(value: object) -> object:
    """A dict, None, or _NOT_A_MAPPING; other mappings are copied (they may be lazy or live)."""
    if value is None or type(value) is dict:
        return value
    if isinstance(value, Mapping):
        try:
            return dict(value)
        except Exception:  # a client's mapping can raise anything while read
            return _NOT_A_MAPPING
    return _NOT_A_MAPPING


def _key_names(keys: Iterable) -> dict[object, str]:
    """A column-name suffix per key; a key that is no string gets a name no field has."""
    names: dict[object, str] = {}
    for index, key in enumerate(keys):
        if type(key) is str:
            names[key] = key
        else:
            names[key] = str.__str__(key) if isinstance(key, str) else f"\x00key-{index}"
    return names


def columns_from_mappings(values: Sequence, container: str) -> list[tuple[str, pa.Array]]:
    """A nested `features`/`segments` field holding one mapping (or None) per event, as Arrow
    columns named `container`: a struct with one explicitly built child per key, and, if some
    value is not a mapping, a boolean column marking those events (its rule rejects them)."""
    if set(map(type, values)) <= {dict, _NONE}:
        mappings = list(values)
    else:
        mappings = [_as_mapping(v) for v in values]
    dicts = [m if type(m) is dict else _EMPTY for m in mappings]
    names = _key_names(dict.fromkeys(itertools.chain.from_iterable(dicts)))
    columns = []
    if names:
        children = [column_from_values([d.get(key) for d in dicts]) for key in names]
        columns.append((container, pa.StructArray.from_arrays(children, list(names.values()))))
    if any(m is _NOT_A_MAPPING for m in mappings):
        marked = [True if m is _NOT_A_MAPPING else None for m in mappings]
        columns.append((container, pa.array(marked, pa.bool_())))
    return columns


def columns_from_records(
    records: Sequence[Mapping | None], *, drop: Iterable[str] = ()
) -> list[tuple[str, pa.Array]]:
    """Columns of raw events given as Python mappings (None for an event without any), as
    (name, column) pairs; `drop` (personal data) never becomes a column."""
    dropped = set(drop)
    rows = [r or _EMPTY for r in records]
    columns: list[tuple[str, pa.Array]] = []
    for key, name in _key_names(dict.fromkeys(itertools.chain.from_iterable(rows))).items():
        if name in dropped:
            continue
        values = [r.get(key) for r in rows]
        if name in _NESTED:
            columns += columns_from_mappings(values, name)
        else:
            columns.append((name, column_from_values(values, timestamps=name == "timestamp")))
    return columns


def raw_table(columns: Sequence[tuple[str, pa.Array]], rows: int) -> pa.Table:
    """A table of raw (name, column) pairs built from Python values, for `validate_batch`; a
    name may repeat, as in a DataFrame (and a nested field with its marker column)."""
    # An all-null column of no known name is ignored by validation; it keeps the row count.
    pairs = list(columns) or [("_rows", pa.nulls(rows))]
    table = pa.Table.from_arrays([c for _, c in pairs], names=[n for n, _ in pairs])
    return table.replace_schema_metadata({_RECORDS_METADATA: b"1"})


def table_from_records(records: Sequence[Mapping], *, drop: Iterable[str] = ()) -> pa.Table:
    """Raw events as Python mappings to a table `validate_batch` reads."""
    return raw_table(columns_from_records(records, drop=drop), len(records))


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    """Typed columns as Arrow reads them; object columns (any Python values) value by value."""
    pairs: list[tuple[str, pa.Array]] = []
    for index, label in enumerate(frame.columns):
        name, series = str(label), frame.iloc[:, index]
        if series.dtype != object:
            try:
                pairs.append((name, pa.array(series, from_pandas=True)))
                continue
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                pass
        values = _python_values(series)
        if name in _NESTED:
            pairs += columns_from_mappings(values, name)
        else:
            pairs.append((name, column_from_values(values, timestamps=name == "timestamp")))
    return raw_table(pairs, len(frame))


def _python_values(series: pd.Series) -> list:
    return series.astype(object).where(series.notna(), None).tolist()


# --- column coercion (vectorised) ------------------------------------------------------------


def _combine(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _decoded(array: pa.Array) -> pa.Array:
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _present(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    if array.null_count == len(array):
        return np.zeros(len(array), dtype=bool)
    return array.is_valid().to_numpy(zero_copy_only=False)


def _mask(array: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null as False."""
    return array.fill_null(False).to_numpy(zero_copy_only=False)


def _is_stringlike(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or kind == pa.string_view()


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


class _Marks(NamedTuple):
    """Rows of a string column built from Python values that hold a marker, by marker."""

    any: np.ndarray
    naive: np.ndarray
    true: np.ndarray
    false: np.ndarray


def _marks(strings: pa.Array) -> _Marks | None:
    marked = _mask(pc.starts_with(strings, _MARK))
    if not marked.any():
        return None
    naive, true, false = (_mask(pc.equal(strings, m)) for m in (_NAIVE, _TRUE, _FALSE))
    return _Marks(marked, naive, true, false)


def _to_string(
    array: pa.Array, sentinels: bool, *, booleans: bool = False
) -> tuple[pa.Array, np.ndarray]:
    """(strings, rows whose value is not a scalar that reads as a string). A boolean reads as
    "true"/"false" only with `booleans` (categorical values): no identifier, and no string
    the contract defines, is a boolean."""
    array = _decoded(array)
    n, kind = len(array), array.type
    nothing = np.zeros(n, dtype=bool)
    if pa.types.is_null(kind):
        return pa.nulls(n, pa.string()), nothing
    if booleans and pa.types.is_boolean(kind):
        return array.cast(pa.string()), nothing
    if not (_is_stringlike(kind) or _is_number(kind)):
        return pa.nulls(n, pa.string()), _present(array)
    strings = array.cast(pa.string())
    marks = _marks(strings) if sentinels and _is_stringlike(kind) else None
    if marks is None:
        return strings, nothing
    strings = pc.if_else(pa.array(marks.any), None, strings)
    if not booleans:
        return strings, marks.any
    strings = pc.if_else(pa.array(marks.true), "true", strings)
    strings = pc.if_else(pa.array(marks.false), "false", strings)
    return strings, marks.any & ~marks.true & ~marks.false


def _to_float(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values with NaN where null or unreadable, present, not a number). A boolean is not a
    number: True as a latency or a score is a client's bug, not 1.0."""
    array = _decoded(array)
    n, kind = len(array), array.type
    present = _present(array)
    nothing = np.zeros(n, dtype=bool)
    if pa.types.is_null(kind):
        return np.full(n, np.nan), present, nothing
    if _is_number(kind):
        values = array.cast(pa.float64(), safe=False)
        return _float_numpy(values), present, nothing
    if not _is_stringlike(kind):
        return np.full(n, np.nan), present, present.copy()
    strings = array.cast(pa.string())
    try:
        return _float_numpy(strings.cast(pa.float64())), present, nothing
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Arrow's cast refuses the whole column for one bad value (and its message quotes it):
    # pandas parses what it can, and a present value that did not parse is not a number.
    parsed = pd.to_numeric(pd.Series(strings.to_numpy(zero_copy_only=False)), errors="coerce")
    values = parsed.to_numpy(dtype=float, na_value=np.nan)
    nan_text = _mask(pc.match_substring_regex(strings, _NAN_RE, ignore_case=True))
    return values, present, present & np.isnan(values) & ~nan_text


def _float_numpy(values: pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False).astype(float, copy=False)


@dataclass(frozen=True)
class _Instants:
    micros: np.ndarray  # int64 microseconds since the epoch, UTC; 0 where not ok
    ok: np.ndarray
    naive: np.ndarray
    invalid: np.ndarray
    present: np.ndarray


def _to_instants(array: pa.Array, sentinels: bool) -> _Instants:
    """Timestamps with a zone, ISO 8601 strings with an offset or Z, or epoch seconds."""
    array = _decoded(array)
    n, kind = len(array), array.type
    present = _present(array)
    micros, ok = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    naive, invalid = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            naive = present
        else:
            micros, ok = _micros(array.cast(TIMESTAMP, safe=False)), present
    elif _is_number(kind):
        micros, ok = _epoch_micros(_to_float(array)[0])
        invalid = present & ~ok
    elif _is_stringlike(kind):
        return _string_instants(array.cast(pa.string()), sentinels, present)
    elif not pa.types.is_null(kind):
        invalid = present
    return _Instants(micros, ok, naive, invalid, present)


def _string_instants(strings: pa.Array, sentinels: bool, present: np.ndarray) -> _Instants:
    marks = _marks(strings) if sentinels else None
    if marks is not None:
        strings = pc.if_else(pa.array(marks.any), None, strings)
    try:
        micros, ok = _micros(strings.cast(TIMESTAMP)), _present(strings)
        naive = np.zeros(len(strings), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        micros, ok, naive = _parse_instant_strings(strings)
    invalid = _present(strings) & ~ok & ~naive
    if marks is not None:
        naive, invalid = naive | marks.naive, invalid | (marks.any & ~marks.naive)
    return _Instants(micros, ok, naive, invalid, present)


def _micros(timestamps: pa.Array) -> np.ndarray:
    return timestamps.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)


def _epoch_micros(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(seconds) & (np.abs(seconds) < _MAX_EPOCH_SECONDS)
    micros = np.zeros(len(seconds), dtype=np.int64)
    micros[ok] = np.round(seconds[ok] * 1e6).astype(np.int64)
    return micros, ok


def _parse_instant_strings(strings: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(strings)
    micros, ok = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    numeric = _mask(pc.match_substring_regex(strings, _NUMERIC_RE))
    if numeric.any():
        seconds = np.full(n, np.nan)
        seconds[numeric] = _to_float(strings.filter(pa.array(numeric)))[0]
        micros, ok = _epoch_micros(seconds)
    aware = _mask(pc.match_substring_regex(strings, _AWARE_RE))
    if aware.any():
        subset = strings.filter(pa.array(aware))
        try:
            parsed, parsed_ok = _micros(subset.cast(TIMESTAMP)), np.ones(len(subset), bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            stamps = pd.to_datetime(
                pd.Series(subset.to_numpy(zero_copy_only=False)),
                utc=True,
                format="ISO8601",
                errors="coerce",
            )
            parsed_ok = stamps.notna().to_numpy()
            parsed = np.zeros(len(subset), dtype=np.int64)
            parsed[parsed_ok] = pd.DatetimeIndex(stamps[parsed_ok]).as_unit("us").asi8
        micros[aware], ok[aware] = parsed, parsed_ok
    naive = _mask(pc.match_substring_regex(strings, _NAIVE_RE)) & ~ok
    return micros, ok, naive


def _plausible(micros: np.ndarray) -> np.ndarray:
    """The plausible-time rule (EARLIEST_EVENT to now + FUTURE_SLACK, UTC)."""
    unit = dt.timedelta(microseconds=1)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    earliest = (EARLIEST_EVENT - epoch) // unit
    latest = (dt.datetime.now(dt.UTC) + FUTURE_SLACK - epoch) // unit
    return (micros >= earliest) & (micros <= latest)


# --- validation ------------------------------------------------------------------------------

_UNKNOWN = "is not a field of the prediction-event contract (unknown fields are never stored)"
_COMPUTED = "is computed by driftgate; send the raw {raw} and it is stored only as a keyed hash"
_REQUIRED_REASON = "is required"
_DUPLICATE = "is repeated later in the batch; the last one is kept"
_REPEATED = "is given more than once (a repeated column); send each field once"
_IMPLAUSIBLE = (
    f"must fall between {EARLIEST_EVENT:%Y-%m-%d} and one day after now, UTC "
    "(the plausible-time rule)"
)


def shown_name(name: str) -> str:
    """`name` if it reads as a field name, else HIDDEN_NAME: a name that came with the data
    (a file's header, a client's dict key) may itself be personal data."""
    return name if _SHOWN_NAME.fullmatch(name) else HIDDEN_NAME


class _Rules:
    """Per-rule row masks, in the order problems are reported."""

    def __init__(self, rows: int):
        self.rows = rows
        self.found: list[tuple[str, str, np.ndarray]] = []

    def add(self, field: str, reason: str, mask: np.ndarray) -> None:
        if mask.any():
            self.found.append((field, reason, mask))

    def broken(self) -> np.ndarray:
        bad = np.zeros(self.rows, dtype=bool)
        for _, _, mask in self.found:
            bad |= mask
        return bad


def _columns(data: pa.Table) -> tuple[dict[str, pa.Array], bool, dict[str, np.ndarray]]:
    """Column name to one array, with nested features/segments flattened to `feature.<key>`,
    `segment.<key>` (a flat column wins where both carry a value); the rows where a repeated
    column name carries more than one value."""
    sentinels = (data.schema.metadata or {}).get(_RECORDS_METADATA) == b"1"
    columns: dict[str, pa.Array] = {}
    nested: dict[str, pa.Array] = {}
    repeated: dict[str, np.ndarray] = {}
    for index, name in enumerate(data.column_names):  # by index: a name may repeat
        array = _decoded(_combine(data.column(index)))
        if name in _NESTED and pa.types.is_struct(array.type):
            nested.update(_struct_columns(array, _NESTED[name]))
        elif name in _NESTED and pa.types.is_map(array.type):
            nested.update(_map_columns(array, _NESTED[name]))
        elif name in columns:
            columns[name] = _merge_repeated(name, columns[name], array, repeated)
        else:
            columns[name] = array
    for name, array in nested.items():
        if name in columns and columns[name].type == array.type:
            columns[name] = pc.coalesce(columns[name], array)
        elif name not in columns or columns[name].null_count == len(columns[name]):
            columns[name] = array
    return columns, sentinels, repeated


def _merge_repeated(
    name: str, first: pa.Array, second: pa.Array, repeated: dict[str, np.ndarray]
) -> pa.Array:
    """One value per row where only one copy holds one; rows where both do (or where the
    second holds a value of another type) are marked."""
    if first.type == second.type:
        both, merged = _present(first) & _present(second), pc.coalesce(first, second)
    else:
        both, merged = _present(second), first
    repeated[name] = repeated.get(name, np.zeros(len(first), dtype=bool)) | both
    return merged


def _struct_columns(array: pa.StructArray, prefix: str) -> dict[str, pa.Array]:
    children = array.flatten()
    return {
        f"{prefix}.{array.type.field(i).name}": _decoded(child) for i, child in enumerate(children)
    }


def _map_columns(array: pa.MapArray, prefix: str) -> dict[str, pa.Array]:
    keys = pc.unique(array.keys).drop_null().to_pylist()
    key_type = array.type.key_type
    return {
        f"{prefix}.{key}": _decoded(pc.map_lookup(array, pa.scalar(key, key_type), "last"))
        for key in keys
    }


def validate_batch(
    data: pa.Table | pd.DataFrame,
    schema: EventSchema,
    redactor: Redactor,
    *,
    first_row: int = 0,
) -> BatchResult:
    """Split raw events into stored rows that meet the contract and rejected rows with every
    problem named; `row` of a rejected row counts from `first_row`.

    A column name given twice is read as one field: a row where both copies hold a value is
    rejected (personal-data columns excepted: they are dropped anyway).
    """
    if isinstance(data, pd.DataFrame):
        data = _from_pandas(data)
    if not isinstance(data, pa.Table):
        kind = type(data).__name__
        raise DataError(f"prediction events must be an Arrow table or a DataFrame, not {kind}")
    stored, rules = _check(data, schema, redactor)
    bad = rules.broken()
    keep = pa.array(~bad) if bad.any() else None
    valid = pa.Table.from_arrays(
        [
            stored[f.name] if keep is None else stored[f.name].filter(keep)
            for f in schema.arrow_schema
        ],
        schema=schema.arrow_schema,
    )
    return BatchResult(valid, _rejected_table(stored, rules, bad, schema, first_row))


def validate_event(event: Mapping, schema: EventSchema, redactor: Redactor) -> dict:
    """One raw event as its stored row (redacted); ContractError naming each broken rule."""
    stored, rules = _check(table_from_records([event], drop=schema.pii), schema, redactor)
    if rules.found:
        raise ContractError([Problem(None, field, reason) for field, reason, _ in rules.found])
    return {name: stored[name][0].as_py() for name in schema.arrow_schema.names}


def unreadable_rows(schema: EventSchema, problems: Sequence[Problem]) -> pa.Table:
    """Quarantine rows (`EventSchema.rejected_schema`) for events that could not be read at
    all (a malformed line of a file, an event no rule could judge): where and why, no values.
    Each problem's reason is stored as given."""
    count = len(problems)
    head = [
        pa.array([p.row for p in problems], pa.int64()),
        pa.array([p.field for p in problems], pa.string()),
        pa.array([p.reason for p in problems], pa.string()),
    ]
    empty = [pa.nulls(count, f.type) for f in schema.arrow_schema]
    return pa.Table.from_arrays(head + empty, schema=schema.rejected_schema)


class _Reader:
    """One batch's columns, read field by field, and the rules its rows break."""

    def __init__(self, data: pa.Table):
        self.rows = data.num_rows
        self.columns, self.sentinels, self.repeated = _columns(data)
        self.rules = _Rules(self.rows)

    def column(self, name: str) -> pa.Array:
        return self.columns.get(name, pa.nulls(self.rows))

    def text(self, name: str, *, booleans: bool = False) -> pa.Array:
        values, invalid = _to_string(self.column(name), self.sentinels, booleans=booleans)
        self.rules.add(name, "must be a string", invalid)
        return values

    def required_text(self, name: str) -> pa.Array:
        """A required string: present (a value that is no string is reported as such)."""
        values, invalid = _to_string(self.column(name), self.sentinels)
        self.rules.add(name, _REQUIRED_REASON, ~_present(values) & ~invalid)
        self.rules.add(name, "must be a string", invalid)
        return values


def _check(
    data: pa.Table, schema: EventSchema, redactor: Redactor
) -> tuple[dict[str, pa.Array], _Rules]:
    """Every column of every row in the stored shape (null where unreadable), and the rules
    each row breaks, in the order of the stored columns."""
    read = _Reader(data)
    stored = {
        "schema_version": _schema_version(read),
        "model_name": _model_name(read, schema),
        "model_version": _non_blank(read, "model_version", trim=True),
        "request_id": _non_blank(read, "request_id"),
        "environment": read.text("environment").fill_null(schema.environment),
        "timestamp": _timestamp(read),
        "trace_id": read.text("trace_id"),
        "latency_ms": _latency(read),
        "status": _status(read),
        "fallback": _fallback(read),
        "subject_hash": _hashed(read, "subject_id", redactor),
    }
    for name in schema.identifiers:
        stored[f"{name}_hash"] = _hashed(read, name, redactor)
    stored.update(_segments_and_features(read, schema))
    stored["prediction"] = _prediction(read, schema)
    stored["score"] = _score(read, schema)
    _unknown_fields(read, schema)
    _repeated_fields(read, schema)
    _duplicates(stored["request_id"], read.rules)
    return stored, read.rules


def _schema_version(read: _Reader) -> pa.Array:
    if "schema_version" in read.columns:
        version, present, invalid = _to_float(read.columns["schema_version"])
        read.rules.add(
            "schema_version",
            f"must be {SCHEMA_VERSION}, the prediction-event schema version this driftgate reads",
            present & (invalid | (version != SCHEMA_VERSION)),
        )
    return pa.repeat(pa.scalar(SCHEMA_VERSION, pa.int16()), read.rows)


def _model_name(read: _Reader, schema: EventSchema) -> pa.Array:
    if "model_name" in read.columns:
        name = read.text("model_name")
        read.rules.add(
            "model_name",
            f"must be {schema.model!r}, the model these events are recorded for",
            _mask(pc.not_equal(name, schema.model)),
        )
    return pa.repeat(pa.scalar(schema.model, pa.string()), read.rows)


def _non_blank(read: _Reader, name: str, *, trim: bool = False) -> pa.Array:
    """A required string with something besides whitespace; with `trim`, stored without the
    surrounding whitespace (a model version " 3" and "3" are one version)."""
    values = read.required_text(name)
    trimmed = pc.utf8_trim_whitespace(values)
    read.rules.add(name, "must not be empty", _mask(pc.equal(pc.utf8_length(trimmed), 0)))
    return trimmed if trim else values


def _timestamp(read: _Reader) -> pa.Array:
    instants = _to_instants(read.column("timestamp"), read.sentinels)
    rules = read.rules
    rules.add("timestamp", _REQUIRED_REASON, ~instants.present)
    rules.add("timestamp", "has no time zone (send UTC, an offset or Z)", instants.naive)
    rules.add(
        "timestamp",
        "must be a timestamp with a time zone: ISO 8601 with an offset or Z, or epoch seconds",
        instants.invalid,
    )
    implausible = instants.ok & ~_plausible(instants.micros)
    rules.add("timestamp", _IMPLAUSIBLE, implausible)
    usable = instants.ok & ~implausible
    return pa.array(instants.micros, pa.int64(), mask=~usable).cast(TIMESTAMP)


def _latency(read: _Reader) -> pa.Array:
    latency, present, invalid = _to_float(read.column("latency_ms"))
    read.rules.add("latency_ms", _REQUIRED_REASON, ~present)
    with np.errstate(invalid="ignore"):
        unusable = present & (invalid | ~np.isfinite(latency) | (latency < 0))
    read.rules.add("latency_ms", "must be a finite number >= 0", unusable)
    return pa.array(latency, pa.float64(), mask=~present | unusable)


def _status(read: _Reader) -> pa.Array:
    status = read.required_text("status")
    unknown = _present(status) & ~_mask(pc.is_in(status, pa.array(STATUSES)))
    read.rules.add("status", f"must be one of {', '.join(STATUSES)}", unknown)
    return status


def _fallback(read: _Reader) -> pa.Array:
    fallback = read.text("fallback")
    empty = pc.equal(pc.utf8_length(fallback), 0)
    return pc.if_else(pc.fill_null(empty, True), NO_FALLBACK, fallback)


def _hashed(read: _Reader, name: str, redactor: Redactor) -> pa.Array:
    values, invalid = _to_string(read.column(name), read.sentinels)
    read.rules.add(name, "must be a string or an integer", invalid)
    # A blank identifier identifies no one: stored as null, not as the hash of "".
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0), False)
    return redactor.hash_array(pc.if_else(blank, None, values))


def _segments_and_features(read: _Reader, schema: EventSchema) -> dict[str, pa.Array]:
    """Segment columns (a segment missing from `segments` is taken from the feature of its
    name), then feature columns."""
    features = {}
    for name in schema.feature_order:
        key = f"feature.{name}"
        if key not in read.columns:
            kind = pa.float64() if name in schema.numerical else pa.string()
            features[key] = pa.nulls(read.rows, kind)
        elif name in schema.numerical:
            features[key] = _numerical(read, key)
        else:
            features[key] = read.text(key, booleans=True)
    segments = {
        f"segment.{name}": pc.coalesce(
            read.text(f"segment.{name}", booleans=True), features[f"feature.{name}"]
        )
        for name in schema.segments
    }
    return segments | features


def _numerical(read: _Reader, key: str) -> pa.Array:
    values, present, invalid = _to_float(read.columns[key])
    read.rules.add(key, "must be a number", invalid)
    infinite = present & ~invalid & np.isinf(values)
    read.rules.add(key, "must be a finite number", infinite)
    return pa.array(values, pa.float64(), mask=np.isnan(values) | infinite)


def _prediction(read: _Reader, schema: EventSchema) -> pa.Array:
    values, present, invalid = _to_float(read.column("prediction"))
    read.rules.add("prediction", "must be a number", invalid)
    given = present & ~invalid & ~np.isnan(values)  # NaN is a missing value, as in pandas
    with np.errstate(invalid="ignore"):
        if schema.task == "binary_classification":
            wrong = given & ~np.isin(values, (0.0, 1.0))
            reason = "must be 0 or 1 for binary_classification (the probability goes in score)"
        else:
            wrong = given & ~np.isfinite(values)
            reason = "must be a finite number"
    read.rules.add("prediction", reason, wrong)
    return pa.array(values, pa.float64(), mask=np.isnan(values) | wrong)


def _score(read: _Reader, schema: EventSchema) -> pa.Array:
    values, present, invalid = _to_float(read.column("score"))
    read.rules.add("score", "must be a number", invalid)
    given = present & ~invalid & ~np.isnan(values)  # NaN is a missing value, as in pandas
    with np.errstate(invalid="ignore"):
        if schema.task == "binary_classification":
            wrong = given & ~((values >= 0.0) & (values <= 1.0))
            reason = "must be within [0, 1] for binary_classification"
        else:
            wrong = given & ~np.isfinite(values)
            reason = "must be a finite number"
    read.rules.add("score", reason, wrong)
    return pa.array(values, pa.float64(), mask=np.isnan(values) | wrong)


def _unknown_fields(read: _Reader, schema: EventSchema) -> None:
    computed = {"subject_hash": "subject_id"} | {f"{i}_hash": i for i in schema.identifiers}
    for name, array in read.columns.items():
        if array.null_count == len(array):
            continue
        if name in _NESTED:  # still here: not an object (objects were flattened)
            read.rules.add(name, "must be an object of name to value", _present(array))
        elif name not in schema.input_fields:
            reason = _COMPUTED.format(raw=computed[name]) if name in computed else _UNKNOWN
            read.rules.add(shown_name(name), reason, _present(array))


def _repeated_fields(read: _Reader, schema: EventSchema) -> None:
    for name, mask in read.repeated.items():
        if name not in schema.pii:
            read.rules.add(shown_name(name), _REPEATED, mask)


def _duplicates(request_ids: pa.Array, rules: _Rules) -> None:
    """Among rows that are otherwise valid, an earlier row with the request id of a later one
    is refused: the last one is kept."""
    candidates = ~rules.broken() & _present(request_ids)
    count = int(candidates.sum())
    if count < 2:
        return
    indices = np.flatnonzero(candidates)
    ids = request_ids if count == len(request_ids) else request_ids.take(pa.array(indices))
    if pc.count_distinct(ids).as_py() == count:  # the usual case, found by one hash pass
        return
    ids = pd.Series(ids.to_numpy(zero_copy_only=False))
    earlier = ids.duplicated(keep="last").to_numpy()
    if earlier.any():
        mask = np.zeros(rules.rows, dtype=bool)
        mask[indices[earlier]] = True
        rules.add("request_id", _DUPLICATE, mask)


def _problem_text(field: str, reason: str) -> str:
    return f"{field} {reason}"


def _rejected_table(
    stored: Mapping[str, pa.Array],
    rules: _Rules,
    bad: np.ndarray,
    schema: EventSchema,
    first_row: int,
) -> pa.Table:
    indices = np.flatnonzero(bad)
    count = len(indices)
    fields = np.full(count, None, dtype=object)
    reasons = np.full(count, "", dtype=object)
    for field, reason, mask in rules.found:
        hit = mask[indices]
        fields[hit & (fields == None)] = field  # noqa: E711 (elementwise on an object array)
        text = _problem_text(field, reason)
        reasons[hit] = np.where(reasons[hit] == "", text, reasons[hit] + "; " + text)
    keep = pa.array(indices, pa.int64())
    columns = [
        pa.array(indices + first_row, pa.int64()),
        pa.array(fields.tolist(), pa.string()),
        pa.array(reasons.tolist(), pa.string()),
    ] + [stored[f.name].take(keep) for f in schema.arrow_schema]
    return pa.Table.from_arrays(columns, schema=schema.rejected_schema)


# --- SLA statistics and the SLA gate ---------------------------------------------------------

SLA_COLUMNS = (
    "model_version",
    "segment",
    "events",
    "error_rate",
    "timeout_rate",
    "fallback_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
)
ALL_EVENTS = "all"
NULL_SEGMENT = "(null)"


def sla_statistics(events: pd.DataFrame, segments: list[str]) -> pd.DataFrame:
    """Per model version, as a whole (`segment` "all") and per value of each segment column
    (`region=eu`; nulls as `region=(null)`): events, error, timeout and fallback rates, and
    latency percentiles (linear interpolation, numpy's default)."""
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype=_SLA_DTYPES[c]) for c in SLA_COLUMNS})
    frame = pd.DataFrame(
        {
            "model_version": events["model_version"].astype(str).to_numpy(),
            "latency_ms": events["latency_ms"].astype(float).to_numpy(),
            "error": (events["status"] == "error").to_numpy(),
            "timeout": (events["status"] == "timeout").to_numpy(),
            "fallback": (events["fallback"].fillna(NO_FALLBACK) != NO_FALLBACK).to_numpy(),
        }
    )
    parts = [_group_statistics(frame, None, ALL_EVENTS)]
    for name in segments:
        column = name if name in events.columns else f"segment.{name}"
        frame["_segment"] = events[column].to_numpy()
        parts.append(_group_statistics(frame, "_segment", name.removeprefix("segment.")))
    result = pd.concat(parts, ignore_index=True)
    result["_order"] = np.arange(len(result))
    result = result.sort_values(["model_version", "_order"], kind="stable")
    return result.drop(columns="_order").reset_index(drop=True)[list(SLA_COLUMNS)]


_SLA_DTYPES = {
    "model_version": object,
    "segment": object,
    "events": "int64",
    **{c: float for c in SLA_COLUMNS[3:]},
}


def _group_statistics(frame: pd.DataFrame, by: str | None, label: str) -> pd.DataFrame:
    """Statistics per version (`by` None: segment `label`) or per version and value of the
    segment column `by` (segment `<label>=<value>`)."""
    keys = ["model_version"] + ([by] if by else [])
    grouped = frame.groupby(keys, sort=True, dropna=False)
    stats = grouped.agg(
        events=("latency_ms", "size"),
        error_rate=("error", "mean"),
        timeout_rate=("timeout", "mean"),
        fallback_rate=("fallback", "mean"),
    )
    quantiles = grouped["latency_ms"].quantile([0.5, 0.95, 0.99]).unstack()
    stats["latency_p50_ms"] = quantiles[0.5]
    stats["latency_p95_ms"] = quantiles[0.95]
    stats["latency_p99_ms"] = quantiles[0.99]
    stats = stats.reset_index()
    if by is None:
        stats["segment"] = label
    else:
        values = stats[by].astype(object).where(stats[by].notna(), NULL_SEGMENT)
        stats["segment"] = [f"{label}={value}" for value in values]  # one per group, not row
    return stats[list(SLA_COLUMNS)]


def sla_breaches(stats: pd.DataFrame, policy: SLAPolicy) -> pd.DataFrame:
    """Every group and judged metric with its value, limits and verdict ("pass", "warn",
    "block", or "not judged" for a group under `policy.min_events`)."""
    columns = ["model_version", "segment", "metric", "value", "warn", "error", "events", "verdict"]
    metrics = [m for m in policy.limits if m in stats.columns]
    if stats.empty or not metrics:
        return pd.DataFrame(columns=columns)
    long = stats.melt(
        id_vars=["model_version", "segment", "events"],
        value_vars=metrics,
        var_name="metric",
        value_name="value",
    )
    long["warn"] = long["metric"].map({m: policy.limits[m].warn for m in metrics})
    long["error"] = long["metric"].map({m: policy.limits[m].error for m in metrics})
    judged = long["events"] >= policy.min_events
    value = long["value"].astype(float)
    # An unmeasured value of a judged group is no evidence: it blocks (fail closed).
    verdict = np.select(
        [~judged, value.isna() | (value > long["error"]), value > long["warn"]],
        ["not judged", GateVerdict.BLOCK.value, GateVerdict.WARN.value],
        default=GateVerdict.PASS.value,
    )
    long["verdict"] = verdict
    order = {m: i for i, m in enumerate(metrics)}
    long["_metric_order"] = long["metric"].map(order)
    long = long.sort_values(["model_version", "_metric_order"], kind="stable")
    return long.drop(columns="_metric_order").reset_index(drop=True)[columns]


def group_label(model_version: str, segment: str) -> str:
    """`v3 region=eu`, `v2 all`."""
    version = str(model_version)
    return f"{version if version.startswith('v') else 'v' + version} {segment}"


def evaluate_sla(stats: pd.DataFrame, policy: SLAPolicy) -> GateResult:
    """BLOCK when a judged version or segment exceeds an error limit, WARN when it exceeds a
    warn limit; groups under `policy.min_events` are reported, not judged; no events, or no
    group with enough of them, is no evidence and blocks."""
    gate = "sla"
    total = int(stats["events"].sum()) if not stats.empty else 0
    all_rows = stats[stats["segment"] == ALL_EVENTS] if not stats.empty else stats
    events = int(all_rows["events"].sum()) if not all_rows.empty else total
    if events == 0:
        return GateResult(
            gate, GateVerdict.BLOCK, "no prediction events to judge", {"events": 0}, {}
        )
    judged = stats[stats["events"] >= policy.min_events]
    if judged.empty:
        reason = (
            f"no model version or segment has {policy.min_events} events (the most: "
            f"{int(stats['events'].max())}); too little evidence to judge the SLA"
        )
        metrics = {"events": events, "min_events": policy.min_events}
        return GateResult(gate, GateVerdict.BLOCK, reason, metrics, {})
    table = sla_breaches(stats, policy)
    table = table[table["verdict"] != "not judged"]
    if table.empty:
        reason = f"no SLA metric has limits; {len(judged)} groups and {events} events reported"
        return GateResult(gate, GateVerdict.PASS, reason, {"events": events, "breaches": 0}, {})
    worst = _worst(table)
    verdict = GateVerdict(worst["verdict"])
    breaches = int((table["verdict"] != GateVerdict.PASS.value).sum())
    group = group_label(worst["model_version"], worst["segment"])
    value = float(worst["value"])
    metrics = {
        "worst_metric": worst["metric"],
        "worst_group": group,
        "worst_value": None if math.isnan(value) else value,
        "breaches": breaches,
        "events": events,
        "judged_groups": int(len(judged)),
        "unjudged_groups": int(len(stats) - len(judged)),
    }
    threshold = {"warn": float(worst["warn"]), "error": float(worst["error"])}
    where = f"{group.split(' ', 1)[0]} ({worst['segment']})"
    if verdict is GateVerdict.PASS:
        reason = (
            f"every judged group within its warn limits ({len(judged)} groups, {events} events); "
            f"closest: {worst['metric']} {_number(value)} <= {_number(worst['warn'])} in {where}"
        )
    elif math.isnan(value):
        reason = f"{worst['metric']} was not measured in {where}"
    else:
        level = "error" if verdict is GateVerdict.BLOCK else "warn"
        limit = _number(worst[level])
        reason = f"{worst['metric']} {_number(value)} > {level} limit {limit} in {where}"
    if breaches > 1:
        reason += f" (and {breaches - 1} more breaches)"
    return GateResult(gate, verdict, reason, metrics, threshold)


def _worst(table: pd.DataFrame) -> pd.Series:
    """The row that decides: the most severe verdict, then the largest value relative to the
    limit of that verdict's level (the warn limit for passes)."""
    severity = table["verdict"].map(
        {GateVerdict.BLOCK.value: 2, GateVerdict.WARN.value: 1, GateVerdict.PASS.value: 0}
    )
    limit = np.where(severity == 2, table["error"], table["warn"]).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(limit > 0, table["value"].astype(float) / limit, np.inf)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    ranked = table.assign(_severity=severity.to_numpy(), _ratio=ratio)
    ranked = ranked.sort_values(["_severity", "_ratio"], ascending=False, kind="stable")
    return ranked.iloc[0]


def _number(value: float) -> str:
    return str(round(float(value), 4))
