"""The SQLite audit store is append-only and chains every event to the previous one."""

import sqlite3

import pytest

from orchestrator.adapters.audit_store import SqliteAuditLog
from orchestrator.core.audit import AuditAction, AuditEvent, seal

pytestmark = pytest.mark.integration


def test_events_come_back_in_order_with_a_hash_chain(tmp_path):
    log = SqliteAuditLog(tmp_path / "audit.db")
    log.append(AuditEvent(AuditAction.DRIFT_BREACH, "check:x", "toy", evidence={"p": "d1"}))
    log.append(AuditEvent(AuditAction.RETRAIN_REQUESTED, "sensor:y", "toy", dagster_run_id="r"))
    log.append(AuditEvent(AuditAction.PROMOTED, "sensor:z", "other", version="2"))
    events = SqliteAuditLog(tmp_path / "audit.db").events()
    assert [e.action for e in events] == [
        AuditAction.DRIFT_BREACH,
        AuditAction.RETRAIN_REQUESTED,
        AuditAction.PROMOTED,
    ]
    assert events[0].prev_hash is None
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    for event in events:  # each stored hash is the hash of the stored content
        assert seal(event, event.prev_hash).hash == event.hash
    assert [e.model for e in log.events(model="toy")] == ["toy", "toy"]
    assert events[0].evidence == {"p": "d1"} and events[0].at.tzinfo is not None


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"]
)
def test_rows_cannot_be_changed_or_removed(tmp_path, statement):
    log = SqliteAuditLog(tmp_path / "audit.db")
    log.append(AuditEvent(AuditAction.APPROVAL_GRANTED, "alice", "toy", version="1"))
    with (
        sqlite3.connect(tmp_path / "audit.db") as conn,
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
    ):
        conn.execute(statement)
    assert len(log.events()) == 1
