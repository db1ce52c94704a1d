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
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from orchestrator.core.errors import ConfigError, DataError
from orchestrator.core.gates import GateResult, GateVerdict
from orchestrator.core.spec import FeatureKind, MonitoredModelSpec, SLAPolicy

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
_SCALAR_INPUTS = (
    "schema_version",
    "model_name",
    "model_version",
    "environment",
    "timestamp",
    "request_id",
    "trace_id",
    "latency_ms",
    "status",
    "fallback",
    "subject_id",
    "prediction",
    "score",
)
_NESTED = {"features": "feature", "segments": "segment"}
# Marks a value that is not a scalar (a dict where a number belongs) in columns built from
# Python objects, so that the rule for its field rejects it; it can never be a real value.
_INVALID = "\x00driftgate:not-a-scalar\x00"
_RECORDS_METADATA = b"driftgate.records"

_NUMERIC_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_AWARE_RE = (
    r"^\s*\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)\s*$"
)
_NAIVE_RE = r"^\s*\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?)?\s*$"
_NAN_RE = r"^\s*[+-]?nan\s*$"
_MAX_EPOCH_SECONDS = 1e11  # year ~5000: beyond it the number is milliseconds, not seconds


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
        data = value.encode() if isinstance(value, str) else value
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def hash_array(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Hex digests of string values; nulls stay null. Each distinct value is hashed once."""
        array = _decoded(_combine(values))
        if not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        if len(array) == 0:
            return pa.array([], pa.string())
        encoded = array.dictionary_encode()
        distinct = encoded.dictionary.cast(pa.binary()).to_pylist()
        inner_copy, outer_copy = self._inner.copy, self._outer.copy

        def digest(data: bytes) -> str:
            inner = inner_copy()
            inner.update(data)
            outer = outer_copy()
            outer.update(inner.digest())
            return outer.hexdigest()

        hashed = pa.array([digest(v) for v in distinct], pa.string())
        return hashed.take(encoded.indices)


# --- Python objects to Arrow -----------------------------------------------------------------


def column_from_values(values: Sequence) -> pa.Array:
    """An Arrow column from Python values of one field, whatever they are: mixed numbers and
    strings become strings (the field's rule then parses them), non-scalars become a marker
    its rule rejects."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    if all(v is None or isinstance(v, int | float | np.number) for v in values):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([_as_text(v) for v in values], pa.string())


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal | np.number):
        return str(value)
    return _INVALID


def columns_from_mappings(values: Sequence, container: str) -> dict[str, pa.Array]:
    """Flat columns (`feature.<key>`, `segment.<key>`) from a nested `features`/`segments`
    field holding one mapping (or None) per event; anything else marks the event."""
    prefix = _NESTED[container]
    try:  # the usual batch: Arrow converts the dicts to one struct column in C++
        struct = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        struct = None
    if struct is not None and pa.types.is_struct(struct.type):
        names = [field.name for field in struct.type]
        return {f"{prefix}.{n}": c for n, c in zip(names, struct.flatten(), strict=True)}
    keys: dict[object, None] = {}
    malformed = False
    for value in values:
        if isinstance(value, Mapping):
            keys.update(dict.fromkeys(value))
        elif value is not None:
            malformed = True
    columns = {
        f"{prefix}.{key}": column_from_values(
            [v.get(key) if isinstance(v, Mapping) else None for v in values]
        )
        for key in keys
    }
    if malformed:
        columns[container] = pa.array(
            [None if v is None or isinstance(v, Mapping) else True for v in values], pa.bool_()
        )
    return columns


def columns_from_records(
    records: Sequence[Mapping | None], *, drop: Iterable[str] = ()
) -> dict[str, pa.Array]:
    """Columns of raw events given as Python mappings (None for an event without any);
    nested `features`/`segments` are flattened, and `drop` (personal data) never becomes a
    column."""
    dropped = set(drop)
    keys: dict[str, None] = {}
    for record in records:
        if record:
            keys.update(dict.fromkeys(record))
    columns: dict[str, pa.Array] = {}
    for key in keys:
        if key in dropped:
            continue
        values = [r.get(key) if r else None for r in records]
        if key in _NESTED:
            columns.update(columns_from_mappings(values, key))
        else:
            columns[str(key)] = column_from_values(values)
    return columns


def raw_table(columns: Mapping[str, pa.Array], rows: int) -> pa.Table:
    """A table of raw columns built from Python values, for `validate_batch`."""
    # An all-null column of no known name is ignored by validation; it keeps the row count.
    table = pa.table(dict(columns) if columns else {"_rows": pa.nulls(rows)})
    return table.replace_schema_metadata({_RECORDS_METADATA: b"1"})


def table_from_records(records: Sequence[Mapping], *, drop: Iterable[str] = ()) -> pa.Table:
    """Raw events as Python mappings to a table `validate_batch` reads."""
    return raw_table(columns_from_records(records, drop=drop), len(records))


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for name in frame.columns:
        series = frame[name]
        if name in _NESTED and series.dtype == object:
            columns.update(columns_from_mappings(_python_values(series), name))
            continue
        try:
            columns[str(name)] = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            columns[str(name)] = column_from_values(_python_values(series))
    return raw_table(columns, len(frame))


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


def _to_string(array: pa.Array, sentinels: bool) -> tuple[pa.Array, np.ndarray]:
    """(strings, rows whose value is not a scalar that reads as a string)."""
    array = _decoded(array)
    n, kind = len(array), array.type
    nothing = np.zeros(n, dtype=bool)
    if pa.types.is_null(kind):
        return pa.nulls(n, pa.string()), nothing
    if not (_is_stringlike(kind) or _is_number(kind) or pa.types.is_boolean(kind)):
        return pa.nulls(n, pa.string()), _present(array)
    strings = array.cast(pa.string())
    if sentinels and _is_stringlike(kind):
        marked = _mask(pc.equal(strings, _INVALID))
        if marked.any():
            return pc.if_else(pa.array(marked), None, strings), marked
    return strings, nothing


def _to_float(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values with NaN where null or unreadable, present, not a number)."""
    array = _decoded(array)
    n, kind = len(array), array.type
    present = _present(array)
    nothing = np.zeros(n, dtype=bool)
    if pa.types.is_null(kind):
        return np.full(n, np.nan), present, nothing
    if _is_number(kind) or pa.types.is_boolean(kind):
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

    def array(self) -> pa.Array:
        return pa.array(self.micros, pa.int64(), mask=~self.ok).cast(TIMESTAMP)


def _to_instants(array: pa.Array) -> _Instants:
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
        strings = array.cast(pa.string())
        try:
            micros, ok = _micros(strings.cast(TIMESTAMP)), present
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            micros, ok, naive = _parse_instant_strings(strings)
            invalid = present & ~ok & ~naive
    elif not pa.types.is_null(kind):
        invalid = present
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


# --- validation ------------------------------------------------------------------------------

_UNKNOWN = "is not a field of the prediction-event contract (unknown fields are never stored)"
_COMPUTED = "is computed by driftgate; send the raw {raw} and it is stored only as a keyed hash"
_REQUIRED_REASON = "is required"
_DUPLICATE = "duplicate request_id in batch; the last one is kept"


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


def _columns(data: pa.Table) -> tuple[dict[str, pa.Array], bool]:
    """Column name to one array, with nested features/segments flattened to `feature.<key>`,
    `segment.<key>` (a flat column wins where both carry a value)."""
    sentinels = (data.schema.metadata or {}).get(_RECORDS_METADATA) == b"1"
    columns: dict[str, pa.Array] = {}
    nested: dict[str, pa.Array] = {}
    for name in data.column_names:
        array = _decoded(_combine(data.column(name)))
        if name in _NESTED and pa.types.is_struct(array.type):
            children = array.flatten()
            for index, child in enumerate(children):
                nested[f"{_NESTED[name]}.{array.type.field(index).name}"] = _decoded(child)
        elif name in _NESTED and pa.types.is_map(array.type):
            nested.update(_map_columns(array, _NESTED[name]))
        elif name in columns:  # a repeated column name: the first value wins
            if columns[name].type == array.type:
                columns[name] = pc.coalesce(columns[name], array)
        else:
            columns[name] = array
    for name, array in nested.items():
        if name in columns and columns[name].type == array.type:
            columns[name] = pc.coalesce(columns[name], array)
        elif name not in columns or columns[name].null_count == len(columns[name]):
            columns[name] = array
    return columns, sentinels


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
    problem named; `row` of a rejected row counts from `first_row`."""
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


def _check(
    data: pa.Table, schema: EventSchema, redactor: Redactor
) -> tuple[dict[str, pa.Array], _Rules]:
    """Every column of every row in the stored shape (null where unreadable), and the rules
    each row breaks."""
    n = data.num_rows
    columns, sentinels = _columns(data)
    rules = _Rules(n)
    stored: dict[str, pa.Array] = {}

    def column(name: str) -> pa.Array:
        return columns.get(name, pa.nulls(n))

    def text(name: str) -> pa.Array:
        values, invalid = _to_string(column(name), sentinels)
        rules.add(name, "must be a string", invalid)
        return values

    def required_text(name: str) -> pa.Array:
        """A required string: present (a value that is no string is reported as such)."""
        values, invalid = _to_string(column(name), sentinels)
        rules.add(name, _REQUIRED_REASON, ~_present(values) & ~invalid)
        rules.add(name, "must be a string", invalid)
        return values

    if "schema_version" in columns:
        version, present, invalid = _to_float(columns["schema_version"])
        rules.add(
            "schema_version",
            f"must be {SCHEMA_VERSION}, the prediction-event schema version this driftgate reads",
            present & (invalid | (version != SCHEMA_VERSION)),
        )
    stored["schema_version"] = pa.repeat(pa.scalar(SCHEMA_VERSION, pa.int16()), n)

    if "model_name" in columns:
        name = text("model_name")
        rules.add(
            "model_name",
            f"must be {schema.model!r}, the model these events are recorded for",
            _mask(pc.not_equal(name, schema.model)),
        )
    stored["model_name"] = pa.repeat(pa.scalar(schema.model, pa.string()), n)

    for name in ("model_version", "request_id"):
        values = required_text(name)
        blank = _mask(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0))
        rules.add(name, "must not be empty", blank)
        stored[name] = values

    environment = text("environment")
    stored["environment"] = environment.fill_null(schema.environment)

    instants = _to_instants(column("timestamp"))
    rules.add("timestamp", _REQUIRED_REASON, ~instants.present)
    rules.add("timestamp", "has no time zone (send UTC, an offset or Z)", instants.naive)
    rules.add(
        "timestamp",
        "must be a timestamp with a time zone: ISO 8601 with an offset or Z, or epoch seconds",
        instants.invalid,
    )
    stored["timestamp"] = instants.array()

    stored["trace_id"] = text("trace_id")

    latency, present, invalid = _to_float(column("latency_ms"))
    rules.add("latency_ms", _REQUIRED_REASON, ~present)
    with np.errstate(invalid="ignore"):
        unusable = present & (invalid | ~np.isfinite(latency) | (latency < 0))
    rules.add("latency_ms", "must be a finite number >= 0", unusable)
    stored["latency_ms"] = pa.array(latency, pa.float64(), mask=~present | unusable)

    status = required_text("status")
    unknown_status = _present(status) & ~_mask(pc.is_in(status, pa.array(STATUSES)))
    rules.add("status", f"must be one of {', '.join(STATUSES)}", unknown_status)
    stored["status"] = status

    fallback = text("fallback")
    empty = pc.equal(pc.utf8_length(fallback), 0)
    stored["fallback"] = pc.if_else(pc.fill_null(empty, True), NO_FALLBACK, fallback)

    stored["subject_hash"] = _hashed("subject_id", column("subject_id"), sentinels, redactor, rules)
    for name in schema.identifiers:
        stored[f"{name}_hash"] = _hashed(name, column(name), sentinels, redactor, rules)

    features = _features(columns, schema, sentinels, rules)
    for name in schema.segments:
        values = text(f"segment.{name}")
        stored[f"segment.{name}"] = pc.coalesce(values, features[f"feature.{name}"])
    stored.update(features)

    stored["prediction"] = _prediction(column("prediction"), schema, rules)
    stored["score"] = _score(column("score"), schema, rules)
    _unknown_fields(columns, schema, rules)

    _duplicates(stored["request_id"], rules)
    return stored, rules


def _unknown_fields(columns: Mapping[str, pa.Array], schema: EventSchema, rules: _Rules) -> None:
    computed = {"subject_hash": "subject_id"} | {f"{i}_hash": i for i in schema.identifiers}
    for name, array in columns.items():
        if array.null_count == len(array):
            continue
        if name in _NESTED:  # still here: not an object (objects were flattened)
            rules.add(name, "must be an object of name to value", _present(array))
        elif name not in schema.input_fields:
            reason = _COMPUTED.format(raw=computed[name]) if name in computed else _UNKNOWN
            rules.add(name, reason, _present(array))


def _hashed(
    name: str, array: pa.Array, sentinels: bool, redactor: Redactor, rules: _Rules
) -> pa.Array:
    values, invalid = _to_string(array, sentinels)
    rules.add(name, "must be a string or an integer", invalid)
    return redactor.hash_array(values)


def _features(
    columns: Mapping[str, pa.Array], schema: EventSchema, sentinels: bool, rules: _Rules
) -> dict[str, pa.Array]:
    features = {}
    for name in schema.feature_order:
        key = f"feature.{name}"
        array = columns.get(key)
        if array is None:
            kind = pa.float64() if name in schema.numerical else pa.string()
            features[key] = pa.nulls(rules.rows, kind)
        elif name in schema.numerical:
            values, present, invalid = _to_float(array)
            rules.add(key, "must be a number", invalid)
            features[key] = pa.array(values, pa.float64(), mask=np.isnan(values))
        else:
            values, invalid = _to_string(array, sentinels)
            rules.add(key, "must be a string", invalid)
            features[key] = values
    return features


def _prediction(array: pa.Array, schema: EventSchema, rules: _Rules) -> pa.Array:
    values, present, invalid = _to_float(array)
    rules.add("prediction", "must be a number", invalid)
    given = present & ~invalid & ~np.isnan(values)  # NaN is a missing value, as in pandas
    with np.errstate(invalid="ignore"):
        if schema.task == "binary_classification":
            wrong = given & ~np.isin(values, (0.0, 1.0))
            reason = "must be 0 or 1 for binary_classification (the probability goes in score)"
        else:
            wrong = given & ~np.isfinite(values)
            reason = "must be a finite number"
    rules.add("prediction", reason, wrong)
    return pa.array(values, pa.float64(), mask=np.isnan(values) | wrong)


def _score(array: pa.Array, schema: EventSchema, rules: _Rules) -> pa.Array:
    values, present, invalid = _to_float(array)
    rules.add("score", "must be a number", invalid)
    given = present & ~invalid & ~np.isnan(values)  # NaN is a missing value, as in pandas
    with np.errstate(invalid="ignore"):
        if schema.task == "binary_classification":
            wrong = given & ~((values >= 0.0) & (values <= 1.0))
            reason = "must be within [0, 1] for binary_classification"
        else:
            wrong = given & ~np.isfinite(values)
            reason = "must be a finite number"
    rules.add("score", reason, wrong)
    return pa.array(values, pa.float64(), mask=np.isnan(values) | wrong)


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
    return (
        reason
        if re.search(rf"(?<![\w.]){re.escape(field)}(?![\w.])", reason)
        else (f"{field} {reason}")
    )


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
