"""Batch ingestion of prediction events a serving stack already logs (Parquet, CSV, JSON lines).

Files are read in chunks, validated against the prediction-event contract, redacted (identifiers
hashed with the model's key, personal data dropped), and written to the same daily partitions
the serving SDK writes; rejected rows go to quarantine with their file row numbers and reasons.
"""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
    Redactor,
    resolve_key,
    table_from_records,
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


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion did: `events` = `accepted` + `rejected`."""

    files: int
    events: int
    accepted: int
    rejected: int
    quarantine_files: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


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
    or `fmt` for all); every file is checked for a known format before anything is written."""
    if isinstance(spec, str):
        from orchestrator.specs import load_spec

        spec = load_spec(spec)
    if not spec.telemetry.enabled:
        raise ConfigError(
            f"{spec.name}: telemetry.enabled is false; enable it in the model's defs.yaml "
            "before ingesting prediction events"
        )
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows}")
    plan = [(Path(p), file_format(Path(p), fmt)) for p in paths]
    for path, _ in plan:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    schema = EventSchema.from_spec(spec)
    redactor = Redactor(key if key is not None else resolve_key(spec.telemetry.hmac_key_env))
    root = HomeLayout.resolve(str(home) if home else None).data / spec.name / "telemetry"
    store = TelemetryStore(root, schema.arrow_schema)
    events = rejected = 0
    written: list[Path] = []
    quarantined: list[Path] = []
    for path, kind in plan:
        row, pending = 0, []
        for chunk in _chunks(path, kind, chunk_rows):
            result = validate_batch(chunk, schema, redactor, first_row=row)
            row += chunk.num_rows
            quarantined += store.write_quarantine(result.rejected, source=str(path))
            rejected += result.rejected.num_rows
            pending.append(result.valid)
            if sum(t.num_rows for t in pending) >= WRITE_ROWS:
                written += store.write_events(pa.concat_tables(pending))
                pending = []
        if pending:
            written += store.write_events(pa.concat_tables(pending))
        events += row
    accepted = events - rejected
    return IngestReport(len(plan), events, accepted, rejected, quarantined, written)


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


def _chunks(path: Path, kind: str, rows: int) -> Iterator[pa.Table]:
    readers = {"parquet": _parquet_chunks, "csv": _csv_chunks, "jsonl": _jsonl_chunks}
    try:
        yield from readers[kind](path, rows)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read it as {kind}: {_without_data(e)}") from e


def _parquet_chunks(path: Path, rows: int) -> Iterator[pa.Table]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield pa.Table.from_batches([batch])


def _csv_chunks(path: Path, rows: int) -> Iterator[pa.Table]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        return
    # Every column read as text: a value that does not parse as its field's type rejects its
    # row (the contract's rules parse them), instead of failing the whole file.
    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
    )
    reader = pcsv.open_csv(
        path, read_options=pcsv.ReadOptions(block_size=16 << 20), convert_options=convert
    )
    yield from _rebatch(reader, rows)


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


def _jsonl_chunks(path: Path, rows: int) -> Iterator[pa.Table]:
    """Blocks of whole lines, each parsed by Arrow; a block Arrow refuses (a field whose type
    changes between lines) is parsed line by line, so that only the bad rows are rejected."""
    for block, first_line in _line_blocks(path):
        table = _arrow_json(block)
        if table is None:
            table = table_from_records(_json_records(block, path, first_line))
        for start in range(0, table.num_rows, rows):
            yield table.slice(start, rows)


def _arrow_json(block: bytes) -> pa.Table | None:
    """The block as Arrow reads it, with `timestamp` kept as written: left to itself Arrow
    turns ISO strings into timestamps without a zone (an offset applied, or none assumed), and
    the contract must tell the two apart. None when Arrow cannot type a column."""
    for kind in (pa.string(), pa.float64()):  # ISO 8601 text, or epoch seconds
        options = pjson.ParseOptions(
            explicit_schema=pa.schema([("timestamp", kind)]), unexpected_field_behavior="infer"
        )
        try:
            return pjson.read_json(io.BytesIO(block), parse_options=options)
        except pa.ArrowInvalid:
            continue
    return None


def _line_blocks(path: Path) -> Iterator[tuple[bytes, int]]:
    with path.open("rb") as handle:
        rest, line = b"", 1
        while True:
            data = handle.read(_JSON_BLOCK_BYTES)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: read on
                rest = data
                continue
            yield data[:cut], line
            line += data.count(b"\n", 0, cut)
            rest = data[cut:]
        if rest.strip():
            yield rest, line


def _json_records(block: bytes, path: Path, first_line: int) -> list[dict]:
    records = []
    for offset, line in enumerate(block.splitlines()):
        if not line.strip():
            continue  # as Arrow does: blank lines are not rows
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path}: line {first_line + offset} is not valid JSON") from e
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {first_line + offset} is not a JSON object")
        records.append(record)
    return records


def _without_data(error: Exception) -> str:
    """A reader's message without what follows its second colon: CSV and Parquet readers quote
    the offending row or value there, and a value may be personal data."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ":".join(text.split(":")[:2]).strip()
