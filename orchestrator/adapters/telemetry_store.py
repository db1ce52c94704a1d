"""Prediction events of one model as daily Parquet partitions, written so that readers (and a
process killed mid-write) never leave or see half a file.

    <root>/events/date=YYYY-MM-DD/part-<utc time>-<uuid4 hex>.parquet
    <root>/quarantine/date=YYYY-MM-DD/part-<utc time>-<uuid4 hex>.parquet

`root` is `HomeLayout.telemetry(<model>)`. A file is written as a dot-file ending in `.tmp`,
fsynced, then renamed; a new `date=` folder is fsynced into its parent, so that a power cut
loses neither. A process killed mid-write leaves its `.tmp` file behind: the first write of a
store removes those older than an hour (TMP_MAX_AGE_S), an age no write in progress reaches
(files staged by `staged()` are touched each time another file is staged).
"""

import datetime as dt
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.core.errors import DataError

DROPPED_KEY = b"driftgate.dropped"
SOURCE_KEY = b"driftgate.source"
EVENTS = "events"
QUARANTINE = "quarantine"
TMP_MAX_AGE_S = 3600.0


class TelemetryStore:
    """Writes and reads the event and quarantine partitions under `root`.

    `schema` (optional) is what `read_events` returns when a day has no file yet.
    """

    def __init__(self, root: Path, schema: pa.Schema | None = None):
        self.root = Path(root)
        self.schema = schema
        self._swept = False
        self._staged: list[tuple[Path, Path]] | None = None

    @contextmanager
    def staged(self) -> Iterator["TelemetryStore"]:
        """A store whose writes appear together when the block ends, and not at all if it
        raises: files are written and fsynced as `.tmp` files, then renamed one after the
        other (a crash during the renames can still leave part of them)."""
        writer = TelemetryStore(self.root, self.schema)
        writer._swept, writer._staged = self._swept, []
        try:
            yield writer
        except BaseException:
            for tmp, _ in writer._staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, path in writer._staged:
            os.replace(tmp, path)
        for folder in dict.fromkeys(path.parent for _, path in writer._staged):
            _fsync_folder(folder)
        self._swept = writer._swept

    def write_events(self, table: pa.Table, *, dropped: int = 0) -> list[Path]:
        """One file per UTC date of `timestamp`. `dropped` (events a logger could not queue
        since its last write) goes in the key-value metadata of the first file only, so that
        `dropped(day)` never counts it twice; with no rows it gets a file of its own (today)."""
        if table.num_rows == 0:
            return [self._write(EVENTS, _today(), table, {DROPPED_KEY: dropped})] if dropped else []
        paths = []
        for day, rows in _by_day(table):
            metadata = {DROPPED_KEY: dropped} if dropped and not paths else {}
            paths.append(self._write(EVENTS, day, rows, metadata))
        return paths

    def write_quarantine(
        self, table: pa.Table, day: str | None = None, *, source: str | None = None
    ) -> list[Path]:
        """Rejected rows under `day`, or under the UTC date of their timestamp; a row whose
        timestamp is unusable goes under the date of arrival (today, UTC). `source` (the file
        the rows came from) is recorded in the file's metadata."""
        if table.num_rows == 0:
            return []
        metadata = {SOURCE_KEY: source} if source else {}
        if day is not None:
            return [self._write(QUARANTINE, day, table, metadata)]
        return [self._write(QUARANTINE, d, rows, metadata) for d, rows in _by_day(table)]

    def event_files(self, day: str | dt.date) -> list[Path]:
        return self._files(EVENTS, day)

    def quarantine_files(self, day: str | dt.date) -> list[Path]:
        return self._files(QUARANTINE, day)

    def read_events(self, day: str | dt.date) -> pa.Table:
        return self._read(self.event_files(day), self.schema)

    def read_quarantine(self, day: str | dt.date) -> pa.Table:
        return self._read(self.quarantine_files(day), None)

    def dropped(self, day: str | dt.date) -> int:
        """Events the loggers dropped (queue full), as recorded with that day's files."""
        return sum(
            int((self._metadata(path).metadata or {}).get(DROPPED_KEY, b"0"))
            for path in self.event_files(day)
        )

    def _metadata(self, path: Path) -> pq.FileMetaData:
        try:
            return pq.read_metadata(path)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"cannot read telemetry file {path}: {e}") from e

    def quarantined_rows(self, day: str | dt.date) -> int:
        """Rows quarantined under that day (from the file footers; no data is read)."""
        return sum(self._metadata(path).num_rows for path in self.quarantine_files(day))

    def days(self) -> list[str]:
        """Days with event files, oldest first."""
        return self._days(EVENTS)

    def quarantine_days(self) -> list[str]:
        """Days with quarantined rows, oldest first."""
        return self._days(QUARANTINE)

    def _days(self, kind: str) -> list[str]:
        folder = self.root / kind
        if not folder.exists():
            return []
        return sorted(
            p.name.removeprefix("date=")
            for p in folder.glob("date=*")
            if p.is_dir() and any(p.glob("[!.]*.parquet"))
        )

    def _folder(self, kind: str, day: str | dt.date) -> Path:
        return self.root / kind / f"date={_iso(day)}"

    def _files(self, kind: str, day: str | dt.date) -> list[Path]:
        folder = self._folder(kind, day)
        # Complete files only: a temporary file is a dot-file until its rename.
        return sorted(folder.glob("[!.]*.parquet")) if folder.exists() else []

    def _read(self, paths: list[Path], empty: pa.Schema | None) -> pa.Table:
        """The files concatenated (columns added later are null in older files)."""
        tables = []
        for path in paths:
            try:
                tables.append(pq.read_table(path).replace_schema_metadata(None))
            except (OSError, pa.ArrowException) as e:
                raise DataError(f"cannot read telemetry file {path}: {e}") from e
        if tables:
            return pa.concat_tables(tables, promote_options="default")
        return (empty or pa.schema([])).empty_table()

    def _write(self, kind: str, day: str, table: pa.Table, metadata: dict) -> Path:
        if not self._swept:
            self._sweep()
        folder = self._folder(kind, day)
        _make_folder(folder)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = folder / f"part-{stamp}-{uuid.uuid4().hex}.parquet"
        if metadata:
            extra = {k: str(v).encode() for k, v in metadata.items()}
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
        tmp = _write_tmp(folder, path.name, table)
        if self._staged is not None:
            for staged, _ in self._staged:  # still in progress: not a leftover to sweep
                os.utime(staged)
            self._staged.append((tmp, path))
            return path
        os.replace(tmp, path)
        _fsync_folder(folder)  # the rename itself survives a power cut
        return path

    def _sweep(self) -> None:
        """Remove `.tmp` files older than TMP_MAX_AGE_S: left by a process killed mid-write."""
        self._swept = True
        cutoff = time.time() - TMP_MAX_AGE_S
        for tmp in self.root.glob("*/date=*/.*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except FileNotFoundError:  # another process swept it first
                continue


def _write_tmp(folder: Path, name: str, table: pa.Table) -> Path:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _make_folder(folder: Path) -> None:
    """`folder` and any missing parent, each fsynced into its parent: a file renamed into a
    folder whose own entry was lost in a power cut is lost with it."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        _fsync_folder(created.parent)


def _by_day(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """Rows grouped by the UTC date of `timestamp`; rows without one under today."""
    if "timestamp" not in table.column_names:
        return [(_today(), table)]
    today = dt.datetime.now(dt.UTC).date()
    days = pc.cast(table.column("timestamp"), pa.date32()).fill_null(today)
    distinct = pc.unique(days).to_pylist()
    if len(distinct) == 1:
        return [(distinct[0].isoformat(), table)]
    return [(day.isoformat(), table.filter(pc.equal(days, day))) for day in sorted(distinct)]


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def _iso(day: str | dt.date) -> str:
    text = day.isoformat() if isinstance(day, dt.date) else str(day)
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as e:
        raise DataError(f"{text!r} is not a day in YYYY-MM-DD form") from e


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
