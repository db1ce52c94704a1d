"""Batch ingestion of prediction events a serving stack already logs (Parquet, CSV, JSON lines).

Files are read in chunks, validated against the prediction-event contract, redacted (identifiers
hashed with the model's key, personal data dropped), and written to the same daily partitions
the serving SDK writes; rejected rows go to quarantine with their file row numbers and reasons.

Row numbers count from 0: data rows of a CSV file (the header is not one), non-blank lines of a
JSON-lines file. A row that cannot be read at all (a CSV row with more or fewer values than the
header has columns, a line that is not a JSON object) is quarantined as a malformed row, with
its number and never its text.

Each file is all or nothing: its valid and quarantined rows are staged as temporary files and
appear only once the whole file has been read, so that a file that cannot be read to its end
(a DataError: a corrupt Parquet page, text that is not UTF-8) leaves nothing of itself and can
be ingested again once fixed. Files before it in the same call stay written.
"""

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from orchestrator.adapters.home import HomeLayout
from orchestrator.adapters.telemetry_store import TelemetryStore
from orchestrator.core.errors import ConfigError, DataError
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.telemetry import (
    EventSchema,
    Problem,
    Redactor,
    check_key,
    resolve_key,
    table_from_records,
    unreadable_rows,
    validate_batch,
)

FORMATS = ("parquet", "csv", "jsonl")
SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# Valid rows are written once this many have accumulated (or at the end of a file), so that a
# file read in small chunks still lands as few, large Parquet files.
WRITE_ROWS = 1_000_000
_JSON_BLOCK_BYTES = 32 << 20
_ARROW_COLUMN_RE = re.compile(r"Column\((/[^)]*)\)")


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion did: `events` = `accepted` + `rejected`."""

    files: int
    events: int
    accepted: int
    rejected: int
    quarantine_files: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class _Chunk:
    """Rows of a file: `table`, numbered from `first_row` or, when given, by `rows` (one
    number each), and `malformed`, rows that could not be read."""

    table: pa.Table
    first_row: int = 0
    rows: np.ndarray | None = None
    malformed: tuple[Problem, ...] = ()


def ingest(
    spec: MonitoredModelSpec | str,
    paths: list[Path],
    *,
    home: str | Path | None = None,
    key: bytes | None = None,
    fmt: str | None = None,
    chunk_rows: int = 250_000,
) -> IngestReport:
    """Validate, redact and store the prediction events in `paths` (format from each suffix,
    or `fmt` for all); every file is checked for a known format before anything is written,
    and each file is stored whole or not at all."""
    spec = _enabled_spec(spec)
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows}")
    plan = [(Path(p), file_format(Path(p), fmt)) for p in paths]
    for path, _ in plan:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    schema = EventSchema.from_spec(spec)
    redactor = Redactor(
        check_key(key) if key is not None else resolve_key(spec.telemetry.hmac_key_env)
    )
    layout = HomeLayout.resolve(str(home) if home else None)
    store = TelemetryStore(layout.telemetry(spec.name), schema.arrow_schema)
    reports = []
    for path, kind in plan:
        with store.staged() as staged:
            reports.append(_ingest_file(path, kind, staged, schema, redactor, chunk_rows))
    return IngestReport(
        len(plan),
        sum(r.events for r in reports),
        sum(r.accepted for r in reports),
        sum(r.rejected for r in reports),
        [p for r in reports for p in r.quarantine_files],
        [p for r in reports for p in r.written],
    )


def _enabled_spec(spec: MonitoredModelSpec | str) -> MonitoredModelSpec:
    if isinstance(spec, str):
        from orchestrator.specs import load_spec

        spec = load_spec(spec)
    if not spec.telemetry.enabled:
        raise ConfigError(
            f"{spec.name}: telemetry.enabled is false; enable it in the model's defs.yaml "
            "before ingesting prediction events"
        )
    return spec


def _ingest_file(
    path: Path,
    kind: str,
    store: TelemetryStore,
    schema: EventSchema,
    redactor: Redactor,
    chunk_rows: int,
) -> IngestReport:
    events = rejected = 0
    written: list[Path] = []
    quarantined: list[Path] = []
    pending: list[pa.Table] = []
    for chunk in _chunks(path, kind, chunk_rows, schema):
        first = chunk.first_row if chunk.rows is None else 0
        result = validate_batch(chunk.table, schema, redactor, first_row=first)
        bad = _renumbered(result.rejected, chunk.rows)
        if chunk.malformed:
            bad = pa.concat_tables([bad, unreadable_rows(schema, chunk.malformed)])
        quarantined += store.write_quarantine(bad, source=str(path))
        events += chunk.table.num_rows + len(chunk.malformed)
        rejected += bad.num_rows
        pending.append(result.valid)
        if sum(t.num_rows for t in pending) >= WRITE_ROWS:
            written += store.write_events(pa.concat_tables(pending))
            pending = []
    if pending:
        written += store.write_events(pa.concat_tables(pending))
    return IngestReport(1, events, events - rejected, rejected, quarantined, written)


def _renumbered(rejected: pa.Table, rows: np.ndarray | None) -> pa.Table:
    """Rejected rows (numbered from 0 in their chunk) with their numbers in the file, when the
    chunk's rows are not consecutive (malformed rows were skipped between them)."""
    if rows is None or rejected.num_rows == 0:
        return rejected
    numbers = pa.array(rows[rejected.column("row").to_numpy()], pa.int64())
    return rejected.set_column(0, rejected.schema.field(0), numbers)


def file_format(path: Path, fmt: str | None = None) -> str:
    """`fmt` if given, else the format the suffix names; DataError listing the valid ones."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise DataError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {path.suffix or '(none)'!r}; "
            f"valid: {', '.join(sorted(SUFFIXES))} (or pass a format: {', '.join(FORMATS)})"
        )
    return kind


def _chunks(path: Path, kind: str, rows: int, schema: EventSchema) -> Iterator[_Chunk]:
    readers = {"parquet": _parquet_chunks, "csv": _csv_chunks, "jsonl": _jsonl_chunks}
    try:
        for chunk in readers[kind](path, rows, schema):
            yield from _split(chunk, rows)
    except (OSError, csv.Error, pa.ArrowException) as e:
        # `from None`, not `from e`: a reader's own message quotes the offending row (an
        # e-mail address, an id), and as the cause it would reach tracebacks and the error
        # info Dagster stores. The message kept is cut before any quoted data.
        raise DataError(f"{path}: cannot read it as {kind}: {_without_data(e)}") from None


def _split(chunk: _Chunk, size: int) -> Iterator[_Chunk]:
    """`chunk` in pieces of at most `size` rows; its malformed rows come with the first."""
    for start in range(0, max(chunk.table.num_rows, 1), size):
        yield _Chunk(
            chunk.table.slice(start, size),
            chunk.first_row + start,
            None if chunk.rows is None else chunk.rows[start : start + size],
            chunk.malformed if start == 0 else (),
        )


def _parquet_chunks(path: Path, rows: int, schema: EventSchema) -> Iterator[_Chunk]:
    first = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield _Chunk(pa.Table.from_batches([batch]), first)
        first += batch.num_rows


# --- CSV -------------------------------------------------------------------------------------


def _csv_chunks(path: Path, rows: int, schema: EventSchema) -> Iterator[_Chunk]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        return
    malformed = _MalformedRows()
    # One thread: only then does Arrow tell the number of a row it skips.
    options = pcsv.ReadOptions(block_size=16 << 20, use_threads=False)
    parse = pcsv.ParseOptions(invalid_row_handler=malformed.skip)
    convert = _as_text(header)
    reader = pcsv.open_csv(path, read_options=options, parse_options=parse, convert_options=convert)
    read = 0
    for table in _rebatch(reader, rows):
        numbers = malformed.file_rows(read, table.num_rows)
        yield _without_bad_text(_Chunk(table, read, numbers, malformed.take_new()))
        read += table.num_rows
    if left := malformed.take_new():
        yield _Chunk(reader.schema.empty_table(), read, None, left)


def _as_text(header: list[str]) -> pcsv.ConvertOptions:
    """Every column read as text: a value that does not parse as its field's type rejects its
    row (the contract's rules parse them), instead of failing the whole file. UTF-8 is
    checked after reading, row by row, for the same reason."""
    return pcsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
        check_utf8=False,
    )


class _MalformedRows:
    """Rows Arrow's CSV reader skipped for having the wrong number of values, by number;
    their text is never kept."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.problems: list[Problem] = []
        self._reported = 0

    def skip(self, row: pcsv.InvalidRow) -> str:
        # Arrow counts rows (a quoted line break does not start one), the header as row 1.
        number = -1 if row.number is None else row.number - 2
        self.rows.append(number)
        reason = (
            f"malformed row: {row.actual_columns} values where the header has "
            f"{row.expected_columns} columns"
        )
        self.problems.append(Problem(number, "row", reason))
        return "skip"

    def take_new(self) -> tuple[Problem, ...]:
        new = tuple(self.problems[self._reported :])
        self._reported = len(self.problems)
        return new

    def file_rows(self, start: int, count: int) -> np.ndarray | None:
        """The file row numbers of rows `start`..`start + count` of those read (None: no row
        was skipped, they are consecutive)."""
        skipped = np.array(sorted(r for r in self.rows if r >= 0), dtype=np.int64)
        if len(skipped) == 0:
            return None
        read_before = skipped - np.arange(len(skipped))  # rows read before each skipped one
        positions = np.arange(start, start + count)
        return positions + np.searchsorted(read_before, positions, side="right")


def _without_bad_text(chunk: _Chunk) -> _Chunk:
    """`chunk` without its rows holding text that is not UTF-8, which become malformed rows."""
    table = chunk.table
    try:
        table.validate(full=True)  # checks UTF-8, fast: the usual file has none to find
        return chunk
    except pa.ArrowInvalid:
        pass
    bad = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        bad |= [not _is_utf8(v) for v in column.cast(pa.binary()).to_pylist()]
    rows = chunk.rows
    if rows is None:
        rows = np.arange(chunk.first_row, chunk.first_row + table.num_rows)
    reason = "malformed row: text that is not UTF-8"
    problems = tuple(Problem(int(row), "row", reason) for row in rows[bad])
    return _Chunk(table.filter(pa.array(~bad)), 0, rows[~bad], chunk.malformed + problems)


def _is_utf8(value: bytes | None) -> bool:
    if value is None:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _rebatch(batches, rows: int) -> Iterator[pa.Table]:
    pending, count = [], 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


# --- JSON lines ------------------------------------------------------------------------------


def _jsonl_chunks(path: Path, rows: int, schema: EventSchema) -> Iterator[_Chunk]:
    """Blocks of whole lines, each parsed by Arrow; a block Arrow refuses (a field whose type
    changes between lines, a line that is not JSON) is parsed line by line, so that only the
    bad rows are rejected."""
    arrow = _ArrowJson(schema)
    first = 0
    for block in _line_blocks(path):
        table = arrow.read(block)
        chunk = _json_records(block, first) if table is None else _Chunk(table, first)
        yield chunk
        first += chunk.table.num_rows + len(chunk.malformed)


class _ArrowJson:
    """Arrow's JSON reader with the contract's string fields typed as strings: left to itself
    Arrow turns a date-looking id or version into a timestamp, and ISO timestamps into ones
    without a zone (an offset applied, or none assumed), which the contract must tell apart.
    `timestamp` is read as text, else as epoch seconds; a string field holding numbers in a
    block is left to Arrow (an integer id stays exact). Types that worked are tried first on
    the next block."""

    def __init__(self, schema: EventSchema):
        self.full = _json_types(schema)
        self.last: dict[str, pa.DataType] | None = None

    def read(self, block: bytes) -> pa.Table | None:
        """The block as Arrow reads it; None when Arrow cannot type it."""
        types = dict(self.last or self.full)
        for _ in range(len(self.full) + 2):
            options = pjson.ParseOptions(
                explicit_schema=pa.schema(list(types.items())), unexpected_field_behavior="infer"
            )
            try:
                table = pjson.read_json(io.BytesIO(block), parse_options=options)
            except pa.ArrowInvalid as error:
                if not _loosened(types, str(error)):
                    return None
                continue
            self.last = types
            return table
        return None


def _json_types(schema: EventSchema) -> dict[str, pa.DataType]:
    text = pa.string()
    names = ["model_name", "model_version", "environment", "request_id", "trace_id", "status"]
    names += ["fallback", "subject_id", *schema.identifiers]
    names += [f"feature.{n}" for n in schema.categorical]
    names += [f"segment.{n}" for n in schema.segments]
    types = {"timestamp": text} | dict.fromkeys(names, text)
    if schema.categorical:
        types["features"] = pa.struct([(n, text) for n in schema.categorical])
    if schema.segments:
        types["segments"] = pa.struct([(n, text) for n in schema.segments])
    return types


def _loosened(types: dict[str, pa.DataType], message: str) -> bool:
    """Drop (or, for `timestamp`, change) the type Arrow's error names; False if it names
    none that can change."""
    match = _ARROW_COLUMN_RE.search(message)
    path = match.group(1).split("/")[1:] if match else []
    if not path or path[0] not in types:
        return False
    name = path[0]
    if name == "timestamp":  # never left to Arrow (see _ArrowJson)
        if types[name] != pa.string():
            return False
        types[name] = pa.float64()
        return True
    kind = types[name]
    if len(path) == 2 and pa.types.is_struct(kind):
        kept = [child for child in kind if child.name != path[1]]
        if len(kept) == kind.num_fields:
            return False
        types[name] = pa.struct(kept)
        return True
    del types[name]
    return True


def _line_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        rest = b""
        while True:
            data = handle.read(_JSON_BLOCK_BYTES)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: read on
                rest = data
                continue
            yield data[:cut]
            rest = data[cut:]
        if rest.strip():
            yield rest


def _json_records(block: bytes, first_row: int) -> _Chunk:
    """A block line by line: the JSON objects as records, the other lines as malformed."""
    records, numbers, malformed = [], [], []
    row = first_row
    for line in block.splitlines():
        if not line.strip():
            continue  # as Arrow does: blank lines are not rows
        record = _json_object(line)
        if isinstance(record, dict):
            records.append(record)
            numbers.append(row)
        else:
            malformed.append(Problem(row, "row", f"malformed row: {record}"))
        row += 1
    table = table_from_records(records)
    return _Chunk(table, 0, np.array(numbers, dtype=np.int64), tuple(malformed))


def _json_object(line: bytes) -> dict | str:
    """The line's JSON object, or why it is none."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
        return "not valid JSON"
    return record if isinstance(record, dict) else "not a JSON object"


def _without_data(error: Exception) -> str:
    """A reader's message without what follows its second colon: CSV and Parquet readers quote
    the offending row or value there, and a value may be personal data."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ":".join(text.split(":")[:2]).strip()
