"""Append-only audit logs: SQLite (the embedded default) and Postgres (the production profile).

Triggers refuse UPDATE and DELETE (and TRUNCATE in Postgres), so the store stays append-only
even against a careless hand; each row carries its seq and the hash of its predecessor (see
core.audit.seal), so a hand that disables the triggers is caught by core.audit.verify_chain.

Each store also counts the seqs it has handed out in a one-row table beside the events (which
its triggers let only count up): the rows alone cannot show that the newest ones were deleted,
but the next append then takes the seq after the count and leaves a gap that verify_chain names.
Appending needs SELECT and INSERT on the events and SELECT and UPDATE on the count.
"""

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.core.audit import AuditAction, AuditEvent, AuditLog, seal
from orchestrator.core.errors import ConfigError, DriftgateError

if TYPE_CHECKING:  # psycopg loads only for the production profile (about 0.1 s to import)
    from psycopg import Connection, sql

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL UNIQUE,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT,
    dagster_run_id TEXT,
    evidence TEXT NOT NULL,
    prev_hash TEXT,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TABLE IF NOT EXISTS audit_events_count (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    appended INTEGER NOT NULL
);
INSERT OR IGNORE INTO audit_events_count (only_row, appended) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS audit_events_count_up BEFORE UPDATE ON audit_events_count
WHEN NEW.appended <= OLD.appended
BEGIN SELECT RAISE(ABORT, 'audit_events_count only counts up'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_count_no_delete BEFORE DELETE ON audit_events_count
BEGIN SELECT RAISE(ABORT, 'audit_events_count only counts up'); END;
"""

_STORED = "seq, at, action, actor, model, version, dagster_run_id, evidence, prev_hash, hash"
_COLUMNS = f"id, {_STORED}"


class SqliteAuditLog(AuditLog):
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(audit_events)")}
            if columns and "seq" not in columns:
                raise ConfigError(
                    f"the audit store {path} predates sealed sequence numbers; keep it as an "
                    "archive (move it aside) and let driftgate start a new one"
                )
            conn.executescript(_SCHEMA)

    def appended(self) -> int:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT appended FROM audit_events_count").fetchone()[0]

    def _connect(self) -> sqlite3.Connection:
        # Sensors, runs and the CLI may append at once: wait for the writer lock, don't fail.
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def append(self, event: AuditEvent) -> AuditEvent:
        with closing(self._connect()) as conn:
            # BEGIN IMMEDIATE takes the write lock before reading the last row: no forked chain.
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = conn.execute(f"SELECT {_COLUMNS} FROM audit_events ORDER BY id DESC LIMIT 1")
                counted = conn.execute("SELECT appended FROM audit_events_count").fetchone()[0]
                sealed = seal(event, _last(last.fetchone()), counted)
                conn.execute("UPDATE audit_events_count SET appended = ?", [sealed.seq])
                cursor = conn.execute(
                    f"INSERT INTO audit_events ({_STORED}) VALUES ({', '.join('?' * 10)})",
                    _to_row(sealed),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return replace(sealed, id=cursor.lastrowid)

    def events(
        self, model: str | None = None, actions: Sequence[AuditAction] | None = None
    ) -> list[AuditEvent]:
        where, params = _filters(model, actions, "?")
        with closing(self._connect()) as conn:
            query = f"SELECT {_COLUMNS} FROM audit_events WHERE {where} ORDER BY id"
            rows = conn.execute(query, params).fetchall()
        return [_from_row(row) for row in rows]


# The function raises whatever fires it; the row trigger covers UPDATE and DELETE, the statement
# trigger TRUNCATE (which fires no row triggers). The count may only go up.
_PG_SCHEMA = """
CREATE TABLE {table} (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT NOT NULL UNIQUE,
    at TIMESTAMPTZ NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT,
    dagster_run_id TEXT,
    evidence TEXT NOT NULL,
    prev_hash TEXT,
    hash TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$;
CREATE TRIGGER {no_change} BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
CREATE TRIGGER {no_truncate} BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TABLE {count} (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    appended BIGINT NOT NULL
);
INSERT INTO {count} (appended) VALUES (0);
CREATE OR REPLACE FUNCTION {count_up}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.appended > OLD.appended THEN RETURN NEW; END IF;
    END IF;
    RAISE EXCEPTION '% only counts up: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER {count_no_rewind} BEFORE UPDATE OR DELETE ON {count}
    FOR EACH ROW EXECUTE FUNCTION {count_up}();
CREATE TRIGGER {count_no_truncate} BEFORE TRUNCATE ON {count}
    FOR EACH STATEMENT EXECUTE FUNCTION {count_up}();
"""
_PG_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")


class PostgresAuditLog(AuditLog):
    """The production profile's audit log: one Postgres table shared by every process."""

    def __init__(self, url: str, table: str = "audit_events"):
        if not _PG_TABLE_NAME.fullmatch(table):
            raise ConfigError(f"audit table {table!r}: use 1 to 40 of a-z, 0-9 and _")
        self.url, self.table = url, table
        self._create_schema()

    def _connect(self) -> "Connection":
        import psycopg

        try:
            conn = psycopg.connect(self.url)
        except psycopg.ProgrammingError as e:
            raise ConfigError("audit url: not a postgresql:// URL or connection string") from e
        except psycopg.OperationalError as e:  # its message names host and port, no password
            raise DriftgateError(f"audit store unreachable: {e}") from e
        # Each statement must see what was committed before it got the lock, whatever the
        # server's default: under REPEATABLE READ the last hash would be read stale (a fork).
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        return conn

    def _sql(self, template: str) -> "sql.Composed":
        from psycopg import sql

        return sql.SQL(template).format(
            table=sql.Identifier(self.table),
            function=sql.Identifier(f"{self.table}_append_only"),
            no_change=sql.Identifier(f"{self.table}_no_update_or_delete"),
            no_truncate=sql.Identifier(f"{self.table}_no_truncate"),
            count=sql.Identifier(f"{self.table}_count"),
            count_up=sql.Identifier(f"{self.table}_count_up"),
            count_no_rewind=sql.Identifier(f"{self.table}_count_no_rewind"),
            count_no_truncate=sql.Identifier(f"{self.table}_count_no_truncate"),
        )

    def _create_schema(self) -> None:
        """Create the table and its triggers once; an existing table needs no DDL rights."""
        with self._connect() as conn:
            # Processes starting together must not race on the DDL: serialize on the name.
            key = "SELECT pg_advisory_xact_lock(hashtext('driftgate.audit.' || %s))"
            conn.execute(key, [self.table])
            exists = conn.execute("SELECT to_regclass(%s)", [self.table]).fetchone()[0]
            if exists is None:
                conn.execute(self._sql(_PG_SCHEMA))

    def append(self, event: AuditEvent) -> AuditEvent:
        with self._connect() as conn:  # one transaction: commits on exit, rolls back on error
            # The lock is held to commit and taken before reading the last row: no forked chain.
            # An advisory lock needs no privilege beyond what appending needs (LOCK TABLE would).
            conn.execute("SELECT pg_advisory_xact_lock(%s::regclass::oid::bigint)", [self.table])
            last = self._sql(f"SELECT {_COLUMNS} FROM {{table}} ORDER BY id DESC LIMIT 1")
            prev = _last(conn.execute(last).fetchone())
            counted = conn.execute(self._sql("SELECT appended FROM {count}")).fetchone()[0]
            sealed = seal(event, prev, counted)
            conn.execute(self._sql("UPDATE {count} SET appended = %s"), [sealed.seq])
            values = ", ".join(["%s"] * 10)
            insert = self._sql(f"INSERT INTO {{table}} ({_STORED}) VALUES ({values}) RETURNING id")
            event_id = conn.execute(insert, _to_row(sealed)).fetchone()[0]
        return replace(sealed, id=event_id)

    def appended(self) -> int:
        with self._connect() as conn:
            return conn.execute(self._sql("SELECT appended FROM {count}")).fetchone()[0]

    def events(
        self, model: str | None = None, actions: Sequence[AuditAction] | None = None
    ) -> list[AuditEvent]:
        where, params = _filters(model, actions, "%s")
        query = self._sql(f"SELECT {_COLUMNS} FROM {{table}} WHERE {where} ORDER BY id")
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_from_row(row) for row in rows]


def _filters(
    model: str | None, actions: Sequence[AuditAction] | None, mark: str
) -> tuple[str, list[str]]:
    """The WHERE clause of events(), with `mark` as the driver's placeholder."""
    clauses, params = ["1=1"], []
    if model is not None:
        clauses.append(f"model = {mark}")
        params.append(model)
    if actions:
        clauses.append(f"action IN ({', '.join([mark] * len(actions))})")
        params += [a.value for a in actions]
    return " AND ".join(clauses), params


def _to_row(event: AuditEvent) -> tuple:
    """Stored values in _STORED order. Evidence is stored as the exact JSON text the hash
    covers, and `at` as ISO 8601 UTC, so a row read back reseals to the same hash."""
    return (
        event.seq,
        event.at.astimezone(dt.UTC).isoformat(),
        event.action.value,
        event.actor,
        event.model,
        event.version,
        event.dagster_run_id,
        json.dumps(event.evidence, sort_keys=True, default=str),
        event.prev_hash,
        event.hash,
    )


def _last(row: tuple | None) -> AuditEvent | None:
    """The event the next append is sealed to: the last row stored, if any."""
    return _from_row(row) if row else None


def _from_row(row: tuple) -> AuditEvent:
    id_, seq, at, action, actor, model, version, run_id, evidence, prev_hash, hash_ = row
    at = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at)  # Postgres | SQLite
    return AuditEvent(
        action=AuditAction(action),
        actor=actor,
        model=model,
        version=version,
        dagster_run_id=run_id,
        evidence=json.loads(evidence),
        at=at.astimezone(dt.UTC),
        id=id_,
        prev_hash=prev_hash,
        hash=hash_,
        seq=seq,
    )
