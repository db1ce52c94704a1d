"""Append-only audit log in SQLite (the embedded default).

Triggers refuse UPDATE and DELETE, so the store stays append-only even against a careless hand;
each row carries the hash of its predecessor (see core.audit.seal).
"""

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from orchestrator.core.audit import AuditAction, AuditEvent, AuditLog, seal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
"""

_COLUMNS = "id, at, action, actor, model, version, dagster_run_id, evidence, prev_hash, hash"


class SqliteAuditLog(AuditLog):
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # Sensors, runs and the CLI may append at once: wait for the writer lock, don't fail.
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def append(self, event: AuditEvent) -> AuditEvent:
        with closing(self._connect()) as conn:
            # BEGIN IMMEDIATE takes the write lock before reading the last hash: no forked chain.
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
                last = row.fetchone()
                sealed = seal(event, last[0] if last else None)
                cursor = conn.execute(
                    "INSERT INTO audit_events (at, action, actor, model, version, dagster_run_id,"
                    " evidence, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sealed.at.astimezone(dt.UTC).isoformat(),
                        sealed.action.value,
                        sealed.actor,
                        sealed.model,
                        sealed.version,
                        sealed.dagster_run_id,
                        json.dumps(sealed.evidence, sort_keys=True, default=str),
                        sealed.prev_hash,
                        sealed.hash,
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return replace(sealed, id=cursor.lastrowid)

    def events(
        self, model: str | None = None, actions: Sequence[AuditAction] | None = None
    ) -> list[AuditEvent]:
        query, params = f"SELECT {_COLUMNS} FROM audit_events WHERE 1=1", []
        if model is not None:
            query += " AND model = ?"
            params.append(model)
        if actions:
            query += f" AND action IN ({','.join('?' * len(actions))})"
            params += [a.value for a in actions]
        with closing(self._connect()) as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [_from_row(row) for row in rows]


def _from_row(row: tuple) -> AuditEvent:
    id_, at, action, actor, model, version, run_id, evidence, prev_hash, hash_ = row
    return AuditEvent(
        action=AuditAction(action),
        actor=actor,
        model=model,
        version=version,
        dagster_run_id=run_id,
        evidence=json.loads(evidence),
        at=dt.datetime.fromisoformat(at),
        id=id_,
        prev_hash=prev_hash,
        hash=hash_,
    )
