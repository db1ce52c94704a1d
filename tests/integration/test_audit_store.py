"""Both audit stores are append-only, keep one hash chain under concurrent appends, and any
tampering that gets past their triggers is named by verify_chain.

SQLite always runs. Postgres runs against 127.0.0.1:5432 (database `test`, one table per test);
without it the Postgres cases skip, except in CI, where they fail.
"""

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from orchestrator.adapters.audit_store import PostgresAuditLog, SqliteAuditLog, _to_row
from orchestrator.core.audit import (
    AuditAction,
    AuditEvent,
    AuditLog,
    anchored,
    head,
    seal,
    verify_chain,
)

pytestmark = pytest.mark.integration

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Store:
    """One audit store, and the raw database access an operator or an attacker would have."""

    name: str
    table: str
    open: Callable[[], AuditLog]  # a new instance over the same storage, as another process
    execute: Callable[[str, Sequence], None]  # raw SQL, triggers in place
    tamper: Callable[[str, Sequence], None]  # raw SQL with the append-only triggers bypassed
    refused: type[Exception]  # what a trigger raises
    duplicate: type[Exception]  # what a UNIQUE constraint raises

    def sql(self, template: str) -> str:
        """`template` with {table} filled in and `?` as this driver's placeholder."""
        statement = template.format(table=self.table)
        return statement if self.name == "sqlite" else statement.replace("?", "%s")


def sqlite_store(path: Path) -> Store:
    def execute(statement: str, params: Sequence = ()) -> None:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(statement, params)

    def tamper(statement: str, params: Sequence = ()) -> None:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
            conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
            conn.execute(statement, params)

    refused = sqlite3.IntegrityError
    return Store(
        "sqlite", "audit_events", lambda: SqliteAuditLog(path), execute, tamper, refused, refused
    )


def postgres_store(table: str) -> Store:
    import psycopg

    def execute(statement: str, params: Sequence = ()) -> None:
        with psycopg.connect(POSTGRES_URL) as conn:
            conn.execute(statement, params)

    def tamper(statement: str, params: Sequence = ()) -> None:
        with psycopg.connect(POSTGRES_URL) as conn:  # one transaction, triggers back on after
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
            conn.execute(statement, params)
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")

    def open_log() -> AuditLog:
        return PostgresAuditLog(POSTGRES_URL, table)

    refused, duplicate = psycopg.errors.RaiseException, psycopg.errors.UniqueViolation
    return Store("postgres", table, open_log, execute, tamper, refused, duplicate)


def require_postgres() -> None:
    """Skip without Postgres on a developer's machine; in CI its absence is a failure."""
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as e:
        reason = f"no Postgres at {POSTGRES_URL} for the production audit store: {e}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must run the Postgres tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield sqlite_store(tmp_path / "audit.db")
        return
    require_postgres()
    table = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield postgres_store(table)
    import psycopg

    with psycopg.connect(POSTGRES_URL) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_count")
        conn.execute(f"DROP FUNCTION IF EXISTS {table}_append_only(), {table}_count_up()")


def append_four(log: AuditLog) -> list[AuditEvent]:
    """Four events for two models, ids and seqs 1 to 4."""
    log.append(AuditEvent(AuditAction.DRIFT_BREACH, "check:x", "toy", evidence={"p": "d1"}))
    log.append(AuditEvent(AuditAction.RETRAIN_REQUESTED, "sensor:y", "toy", dagster_run_id="r"))
    log.append(AuditEvent(AuditAction.APPROVAL_GRANTED, "alice", "toy", version="2"))
    log.append(AuditEvent(AuditAction.PROMOTED, "sensor:z", "other", version="2"))
    return log.events()


def test_events_come_back_in_order_with_a_hash_chain(store):
    log = store.open()
    log.append(AuditEvent(AuditAction.DRIFT_BREACH, "check:x", "toy", evidence={"p": 0.1}))
    log.append(AuditEvent(AuditAction.RETRAIN_REQUESTED, "sensor:y", "toy", dagster_run_id="r"))
    log.append(AuditEvent(AuditAction.PROMOTED, "sensor:z", "other", version="2"))
    events = store.open().events()
    assert [e.action for e in events] == [
        AuditAction.DRIFT_BREACH,
        AuditAction.RETRAIN_REQUESTED,
        AuditAction.PROMOTED,
    ]
    assert events[0].prev_hash is None
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert verify_chain(events) == []  # each stored hash is the hash of the stored content
    assert [e.model for e in log.events(model="toy")] == ["toy", "toy"]
    assert [e.id for e in log.events(actions=[AuditAction.PROMOTED])] == [3]
    assert events[0].evidence == {"p": 0.1} and events[0].at.tzinfo is not None


@pytest.mark.parametrize("statement", ["UPDATE {table} SET actor = 'x'", "DELETE FROM {table}"])
def test_rows_cannot_be_changed_or_removed(store, statement):
    log = store.open()
    log.append(AuditEvent(AuditAction.APPROVAL_GRANTED, "alice", "toy", version="1"))
    with pytest.raises(store.refused, match="append-only"):
        store.execute(store.sql(statement), ())
    assert [e.actor for e in log.events()] == ["alice"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table}_count SET appended = appended - 1",
        "UPDATE {table}_count SET appended = appended",
        "DELETE FROM {table}_count",
    ],
)
def test_the_count_of_seqs_only_goes_up(store, statement):
    log = store.open()
    log.append(AuditEvent(AuditAction.APPROVAL_GRANTED, "alice", "toy", version="1"))
    with pytest.raises(store.refused, match="only counts up"):
        store.execute(store.sql(statement), ())
    assert log.append(AuditEvent(AuditAction.PROMOTED, "sensor", "toy", version="1")).seq == 2


@pytest.mark.parametrize("store", ["postgres"], indirect=True)  # SQLite has no TRUNCATE
def test_postgres_refuses_truncate(store):
    log = store.open()
    log.append(AuditEvent(AuditAction.APPROVAL_GRANTED, "alice", "toy", version="1"))
    with pytest.raises(store.refused, match="append-only: TRUNCATE refused"):
        store.execute(store.sql("TRUNCATE {table}"), ())
    assert len(log.events()) == 1


THREADS, PER_THREAD = 4, 25


def append_concurrently(open_log: Callable[[], AuditLog]) -> None:
    """THREADS writers, each with its own log instance (like separate processes), at once."""
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            log = open_log()
            start.wait()
            for i in range(PER_THREAD):
                event = AuditEvent(AuditAction.GATE_EVALUATED, f"writer-{n}", "toy")
                log.append(replace(event, evidence={"i": i}))
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []


def assert_one_unforked_chain(events: list[AuditEvent]) -> None:
    assert len(events) == THREADS * PER_THREAD
    assert verify_chain(events) == []
    assert len({e.prev_hash for e in events}) == len(events)  # no two sealed to one parent
    for n in range(THREADS):  # each writer's events in its own order
        mine = [e.evidence["i"] for e in events if e.actor == f"writer-{n}"]
        assert mine == list(range(PER_THREAD))


def test_concurrent_appends_keep_one_unforked_chain(store):
    store.open()  # the schema exists before the race, as after any first start
    append_concurrently(store.open)
    assert_one_unforked_chain(store.open().events())


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_postgres_chain_holds_when_the_server_defaults_to_repeatable_read(store):
    # Under REPEATABLE READ the last hash would be read from a snapshot older than the lock.
    options = "options=-c%20default_transaction_isolation%3Drepeatable%5C%20read"
    store.open()
    append_concurrently(lambda: PostgresAuditLog(f"{POSTGRES_URL}?{options}", store.table))
    assert_one_unforked_chain(store.open().events())


FORGED_INSERT = (
    "INSERT INTO {table} (seq, at, action, actor, model, version, dagster_run_id, evidence, "
    "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def stored(event: AuditEvent) -> tuple:
    """The row an attacker writes for a forged event: the stores' own column format."""
    return _to_row(event)


def test_an_edit_past_the_triggers_is_named(store):
    append_four(store.open())
    store.tamper(store.sql("""UPDATE {table} SET evidence = '{{"p": "d9"}}' WHERE id = 1"""), ())
    store.tamper(store.sql("UPDATE {table} SET actor = 'mallory' WHERE id = 3"), ())
    problems = verify_chain(store.open().events())
    assert [(p.event_id, p.kind) for p in problems] == [(1, "edited"), (3, "edited")]
    assert problems[1].detail.startswith("event 3 (seq 3, approval_granted toy v2, ")


@pytest.mark.parametrize(("deleted", "named"), [(2, 3), (1, 2)])
def test_a_delete_past_the_triggers_is_named(store, deleted, named):
    append_four(store.open())
    store.tamper(store.sql("DELETE FROM {table} WHERE id = ?"), (deleted,))
    problems = verify_chain(store.open().events())
    assert [(p.event_id, p.kind) for p in problems] == [(named, "deleted")]
    assert problems[0].detail.startswith(f"seq {deleted} deleted")


def test_the_newest_row_deleted_then_an_append_is_named(store):
    append_four(store.open())
    store.tamper(store.sql("DELETE FROM {table} WHERE id = 4"), ())
    store.open().append(AuditEvent(AuditAction.PROMOTED, "sensor:z", "toy", version="2"))
    problems = verify_chain(store.open().events())
    assert [(p.event_id, p.kind) for p in problems] == [(5, "deleted")]
    assert problems[0].detail.startswith("seq 4 deleted between event 3 (seq 3, approval_granted")
    assert "and event 5 (seq 5, promoted toy v2, " in problems[0].detail


def test_the_newest_row_deleted_is_named_against_an_anchor(store):
    anchor = head(append_four(store.open()))
    store.tamper(store.sql("DELETE FROM {table} WHERE id = 4"), ())
    events = store.open().events()
    assert verify_chain(events) == []  # the rows alone cannot show it
    problem = anchored(events, *anchor)
    assert (problem.event_id, problem.kind) == (None, "deleted")
    assert "the trail ends at event 3 (seq 3, approval_granted toy v2" in problem.detail


def test_a_forged_row_cannot_take_the_seq_of_a_real_one(store):
    events = append_four(store.open())
    forged = seal(AuditEvent(AuditAction.APPROVAL_GRANTED, "mallory", "toy", "9"), events[0])
    with pytest.raises(store.duplicate, match="(?i)unique"):
        store.tamper(store.sql(FORGED_INSERT), stored(forged))  # seq 2 is taken


def test_an_insert_past_the_triggers_is_named_and_later_appends_are_not_blamed(store):
    events = append_four(store.open())
    # A forged approval sealed to the first event, so that it reads as granted before the rest;
    # UNIQUE leaves it only a fresh seq.
    approval = AuditEvent(AuditAction.APPROVAL_GRANTED, "mallory", "toy", "9")
    forged = seal(approval, events[0], counted=events[-1].seq)
    store.tamper(store.sql(FORGED_INSERT), stored(forged))
    store.open().append(AuditEvent(AuditAction.PROMOTED, "sensor:z", "toy", version="9"))
    problems = verify_chain(store.open().events())
    assert [(p.event_id, p.kind) for p in problems] == [(5, "inserted")]
    assert "sealed to event 1 (seq 1, drift_breach toy" in problems[0].detail
    assert "not to event 4 (seq 4, promoted other v2" in problems[0].detail
