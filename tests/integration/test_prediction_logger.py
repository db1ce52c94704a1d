"""The serving SDK against a real DRIFTGATE_HOME: concurrency, privacy, crash safety, refusals."""

import datetime as dt
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import deque
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.adapters.telemetry_store import TelemetryStore
from orchestrator.core.errors import ConfigError
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.telemetry import EventSchema
from orchestrator.prediction_logger import PredictionLogger
from orchestrator.specs import load_spec

pytestmark = pytest.mark.integration
KEY_ENV = "DRIFTGATE_TELEMETRY_KEY"
KEY = "integration-test-key-5f1c9a"


def telemetry_spec(**telemetry) -> MonitoredModelSpec:
    settings = {"enabled": True, "identifiers": ["account_id"], "pii": ["email"], **telemetry}
    return MonitoredModelSpec.model_validate(
        {**load_spec("churn").model_dump(), "telemetry": settings}
    )


FEATURES = {
    "tenure_months": 12,
    "monthly_charges": 59.9,
    "total_charges": 718.8,
    "support_calls": 1,
    "data_usage_gb": 3.2,
    "avg_session_minutes": 14.0,
    "late_payments": 0,
    "discount_pct": 10,
    "age": 41,
    "satisfaction_score": 7,
    "plan": "standard",
    "contract_type": "monthly",
    "payment_method": "card",
    "region": "north",
    "channel": "app",
}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DRIFTGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(KEY_ENV, KEY)
    return tmp_path / "home"


def test_concurrent_logging_accounts_for_every_event(home):
    threads, per_thread = 8, 20_000
    logger = PredictionLogger(
        telemetry_spec(), queue_size=2_000, flush_interval_s=0.05, batch_size=2_000
    )
    accepted = [0] * threads

    def serve(worker: int) -> None:
        for i in range(per_thread):
            ok = logger.log(
                f"w{worker}-{i}",
                model_version="7",
                latency_ms=float(i % 300),
                status="bogus" if i % 997 == 0 else "ok",  # rejected by the contract
                score=0.5,
                prediction=1,
                features=FEATURES,
                subject_id=f"user-{i}",
            )
            accepted[worker] += ok

    workers = [threading.Thread(target=serve, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    logger.close()
    logger.close()  # idempotent

    stats = logger.stats
    attempts = threads * per_thread
    assert stats.logged == attempts
    assert stats.written + stats.rejected + stats.dropped == attempts
    assert stats.dropped == attempts - sum(accepted) and stats.write_errors == 0
    assert stats.rejected > 0 and stats.written > 0
    store = logger.store
    events = [store.read_events(day) for day in store.days()]
    ids = [i for table in events for i in table.column("request_id").to_pylist()]
    assert len(ids) == stats.written and len(set(ids)) == len(ids)
    assert all(t.schema == EventSchema.from_spec(telemetry_spec()).arrow_schema for t in events)
    assert sum(store.dropped(day) for day in store.days()) == stats.dropped
    quarantined = sum(store.read_quarantine(day).num_rows for day in store.days())
    assert quarantined == stats.rejected
    assert sum(store.quarantined_rows(day) for day in store.days()) == stats.rejected
    assert logger.log("late", model_version="7", latency_ms=1.0) is False  # closed


def test_flush_writes_everything_logged_before_it(home):
    with PredictionLogger(telemetry_spec(), flush_interval_s=60, batch_size=10_000) as logger:
        for i in range(25):
            logger.log(f"r{i}", model_version="1", latency_ms=3.0, features=FEATURES)
        assert logger.flush(timeout=10)
        store = logger.store
        assert sum(store.read_events(d).num_rows for d in store.days()) == 25
        assert logger.stats.written == 25


def test_no_personal_data_reaches_any_file(home):
    emails = ["alice.smith@example.com", "bob+x@example.org", "carol@corp.example"]
    raw_ids = ["user-alice-8812", "user-bob-1177", "acct-99871-raw", "acct-55102-raw"]
    with PredictionLogger(telemetry_spec(), flush_interval_s=0.05) as logger:
        for i, email in enumerate(emails):
            logger.log(
                f"req-{i}",
                model_version="4",
                latency_ms=11.0,
                features=FEATURES,
                subject_id=raw_ids[i % 2],
                account_id=raw_ids[2 + i % 2],
                email=email,
            )
        # A field the contract does not know, holding an e-mail: quarantined without it.
        logger.log("req-undeclared", model_version="4", latency_ms=1.0, contact=emails[0])
    store = logger.store
    day = store.days()[0]
    assert store.read_events(day).num_rows == 3
    quarantine = store.read_quarantine(day).to_pylist()
    assert [(q["request_id"], q["field"]) for q in quarantine] == [("req-undeclared", "contact")]
    assert "contact" not in store.read_quarantine(day).column_names

    files = [p for p in home.rglob("*") if p.is_file()]
    assert len(files) >= 2
    for path in files:
        data = path.read_bytes()
        for secret in emails + raw_ids:
            assert secret.encode() not in data, (secret, path)
        if path.suffix == ".parquet":  # compressed pages: look at the decoded values too
            values = str(pq.read_table(path).to_pylist())
            assert not any(secret in values for secret in emails + raw_ids), path


CHILD = textwrap.dedent(
    """
    import itertools, sys, time
    from orchestrator.core.spec import MonitoredModelSpec
    from orchestrator.prediction_logger import PredictionLogger
    from orchestrator.specs import load_spec

    spec = MonitoredModelSpec.model_validate(
        {
            **load_spec("churn").model_dump(),
            "telemetry": {"enabled": True, "identifiers": ["account_id"], "pii": ["email"]},
        }
    )
    logger = PredictionLogger(spec, flush_interval_s=0.002, batch_size=64)
    features = {"tenure_months": 3, "plan": "basic", "region": "north"}
    for i in itertools.count():
        logger.log(
            f"r{i}", model_version="1", latency_ms=1.0, features=features, account_id=i
        )
        if i % 64 == 0:
            time.sleep(0.0005)
    """
)


def test_a_killed_process_leaves_only_complete_files(home):
    events = home / "data" / "churn" / "telemetry" / "events"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=os.environ.copy(), stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(events.rglob("*.parquet"))) < 20:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the child wrote no files"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    expected = EventSchema.from_spec(telemetry_spec()).arrow_schema
    store = TelemetryStore(home / "data" / "churn" / "telemetry")
    complete = [p for day in store.days() for p in store.event_files(day)]
    assert len(complete) >= 20
    for path in complete:
        table = pq.read_table(path)
        assert table.schema.remove_metadata().equals(expected)
        assert table.num_rows == pq.read_metadata(path).num_rows > 0
        assert table.column("account_id_hash").null_count == 0
    leftovers = [p for p in events.rglob("*") if p.is_file() and p not in complete]
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers)


def test_refuses_to_start_without_a_key_or_with_telemetry_disabled(home, monkeypatch, caplog):
    with pytest.raises(ConfigError, match="at least 16 bytes") as caught:
        PredictionLogger(telemetry_spec(), key=b"short-key")  # given directly: same rule
    assert "short-key" not in str(caught.value)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=r"\$DRIFTGATE_TELEMETRY_KEY is not set"):
        PredictionLogger(telemetry_spec())
    with pytest.raises(ConfigError, match=r"\$MY_SERVING_KEY is not set"):
        PredictionLogger(telemetry_spec(hmac_key_env="MY_SERVING_KEY"))
    with pytest.raises(ConfigError, match="churn: telemetry.enabled is false"):
        PredictionLogger(telemetry_spec(enabled=False), demo=True)
    with caplog.at_level(logging.WARNING, logger="orchestrator.prediction_logger"):
        with PredictionLogger(telemetry_spec(), demo=True) as logger:  # the demo key, by choice
            assert logger.log("r", model_version="1", latency_ms=1.0)
    assert "public demo key" in caplog.text


def test_a_failed_write_is_counted_and_logged_and_serving_goes_on(home, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the home should be")
    with caplog.at_level(logging.ERROR, logger="orchestrator.prediction_logger"):
        logger = PredictionLogger(telemetry_spec(), home=blocked, flush_interval_s=0.01)
        assert logger.log("r1", model_version="1", latency_ms=2.0, features=FEATURES)
        assert logger.flush(timeout=10)
        assert logger.log("r2", model_version="1", latency_ms=2.0, features=FEATURES)
        logger.close()
    stats = logger.stats
    assert stats.write_errors >= 1 and stats.lost == 2 and stats.written == 0
    assert stats.logged == 2
    assert "could not write 1 prediction events of churn" in caplog.text


def stored_rows(logger: PredictionLogger) -> tuple[list[dict], list[dict]]:
    store = logger.store
    events = [r for day in store.days() for r in store.read_events(day).to_pylist()]
    quarantine = [
        r for day in store.quarantine_days() for r in store.read_quarantine(day).to_pylist()
    ]
    return events, quarantine


class EvilInt(int):
    """An int whose value cannot be read: no rule foresees it, its batch must survive it."""

    def __int__(self) -> int:
        raise RuntimeError(SECRET)


SECRET = "jane.secret@example.org"


def hostile_values() -> list:
    aware = dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)
    return [
        None,
        1,
        2.5,
        "text",
        True,
        SECRET.encode(),
        bytearray(b"x"),
        2**70,
        -(2**64),
        10**5000,
        float("nan"),
        float("inf"),
        float("-inf"),
        Decimal("1.5"),
        uuid.uuid4(),
        dt.timedelta(seconds=3),
        dt.date(2026, 1, 2),
        dt.datetime(2026, 1, 2, 10),
        aware,
        aware.astimezone(ZoneInfo("Asia/Tokyo")),
        pd.Timestamp("2026-01-02 10:00"),
        pd.Timestamp(aware),
        pd.NaT,
        np.datetime64("2026-01-02T10:00"),
        np.datetime64("NaT"),
        np.timedelta64(5, "ns"),
        np.float32(1.5),
        np.float16(2),
        np.int8(-3),
        np.uint64(2**64 - 1),
        np.bool_(True),
        np.str_("np-text"),
        np.bytes_(b"np-bytes"),
        np.complex64(1 + 2j),
        {"a": {"b": SECRET}},
        [SECRET],
        (1, 2),
        {SECRET},
        object(),
        "\ud800",
    ]


def test_hostile_values_never_lose_an_event(home):
    rng = random.Random(7)
    values = hostile_values()
    logged = 0
    with PredictionLogger(telemetry_spec(), batch_size=64, flush_interval_s=0.05) as logger:
        for i in range(600):
            pick = rng.choice
            features = {name: pick(values) for name in rng.sample(sorted(FEATURES), 4)}
            if i % 7 == 0:
                features[pick(["tenure_months", SECRET])] = pick(values)
            fields = {pick(["account_id", "email", "contact", "subject_hash"]): pick(values)}
            logger.log(
                f"r{i}" if i % 5 else pick(values),
                model_version=pick(["3", pick(values)]),
                latency_ms=pick([12.5, pick(values)]),
                status=pick(["ok", pick(values)]),
                prediction=pick([1, pick(values)]),
                score=pick([0.5, pick(values)]),
                features=pick([features, pick(values)]),
                segments=pick([None, {"region": pick(values)}, pick(values)]),
                subject_id=pick(["u-1", pick(values)]),
                trace_id=pick([None, pick(values)]),
                fallback=pick([None, pick(values)]),
                timestamp=pick([None, pick(values)]),
                **fields,
            )
            logged += 1
        # One value whose reading raises: its batch is validated event by event.
        logger.log("evil", model_version="3", latency_ms=EvilInt(5), features=FEATURES)
        logger.log("after-evil", model_version="3", latency_ms=1.0, features=FEATURES)
        logged += 2
    stats = logger.stats
    assert (stats.logged, stats.dropped, stats.lost, stats.write_errors) == (logged, 0, 0, 0)
    assert stats.written + stats.rejected == logged and stats.written > 0
    events, quarantine = stored_rows(logger)
    assert (len(events), len(quarantine)) == (stats.written, stats.rejected)
    assert "after-evil" in [e["request_id"] for e in events]
    assert [q["field"] for q in quarantine if q["request_id"] is None and q["row"] == 600] == [
        "event"
    ]
    assert not any(SECRET.encode() in p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert not any(SECRET in str(q) for q in quarantine)


def test_a_queue_smaller_than_a_batch_drops_nothing_from_a_steady_producer(home):
    logger = PredictionLogger(
        telemetry_spec(), queue_size=500, batch_size=50_000, flush_interval_s=30
    )
    for i in range(4_000):  # ~8,000 events/s, far below what the writer sustains
        logger.log(f"r{i}", model_version="1", latency_ms=1.0, features=FEATURES)
        if i % 8 == 0:
            time.sleep(0.001)
    logger.close()
    assert (logger.stats.dropped, logger.stats.written) == (0, 4_000)


@pytest.mark.parametrize(
    "settings",
    [{"queue_size": 0}, {"batch_size": 1.5}, {"queue_size": True}, {"close_timeout_s": 0}],
)
def test_refuses_settings_that_cannot_work(home, settings):
    with pytest.raises(ConfigError, match=next(iter(settings))):
        PredictionLogger(telemetry_spec(), **settings)


class LateDeque(deque):
    """A queue whose append, in the thread named `late`, waits until close() is over: a `log`
    that passed the closed check just before close() and appended just after it."""

    def __init__(self, closed: threading.Event):
        super().__init__()
        self.closed = closed

    def append(self, item) -> None:
        if threading.current_thread().name == "late":
            self.closed.wait(10)
        super().append(item)


def test_an_event_queued_after_close_is_counted_and_flush_says_it_is_not_written(home):
    logger = PredictionLogger(telemetry_spec(), flush_interval_s=0.01)
    closed = threading.Event()
    logger._events = LateDeque(closed)
    late = threading.Thread(
        target=lambda: logger.log("late-1", model_version="1", latency_ms=1.0), name="late"
    )
    late.start()
    time.sleep(0.05)  # the late log() is inside append
    logger.close()
    closed.set()
    late.join()
    stats = logger.stats
    assert stats.logged == 1 and stats.dropped == 1
    assert stats.logged == stats.written + stats.rejected + stats.dropped + stats.lost
    assert logger.flush(timeout=1) is False  # no writer left for what is still queued


class StuckStore:
    """A store on a file system that hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def write_quarantine(self, table, *args, **kwargs) -> list:
        self.release.wait(10)
        return []

    def write_events(self, table, *args, **kwargs) -> list:
        return []


def test_close_gives_up_on_a_stuck_writer_after_its_timeout(home, caplog):
    logger = PredictionLogger(telemetry_spec(), flush_interval_s=0.01, close_timeout_s=0.3)
    logger.store = stuck = StuckStore()
    logger.log("r1", model_version="1", latency_ms=1.0)
    time.sleep(0.1)  # the writer is now stuck in the write
    logger.log("r2", model_version="1", latency_ms=1.0)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="orchestrator.prediction_logger"):
        logger.close()
    assert time.monotonic() - start < 2
    assert "did not finish within 0.3 s" in caplog.text
    stuck.release.set()


def test_a_caller_changing_its_dicts_after_log_does_not_change_the_event(home):
    features, segments = dict(FEATURES), {"region": "north"}
    with PredictionLogger(telemetry_spec(), flush_interval_s=60) as logger:
        logger.log("r1", model_version="1", latency_ms=1.0, features=features, segments=segments)
        features["tenure_months"], features["plan"] = 999, SECRET
        segments["region"] = "south"
    (row,), _ = stored_rows(logger)
    assert (row["feature.tenure_months"], row["feature.plan"]) == (12.0, "standard")
    assert row["segment.region"] == "north"


class FailingStore:
    """A store whose write fails with a message quoting a value, as Arrow's do."""

    def write_quarantine(self, table, *args, **kwargs) -> list:
        raise pa.ArrowInvalid(f"Could not convert '{SECRET}' with type str: tried to convert")

    write_events = write_quarantine


def test_a_failed_write_logs_no_value_from_the_error(home, caplog):
    with caplog.at_level(logging.ERROR, logger="orchestrator.prediction_logger"):
        logger = PredictionLogger(telemetry_spec(), flush_interval_s=0.01)
        logger.store = FailingStore()
        logger.log("r1", model_version="1", latency_ms=1.0)
        assert logger.flush(timeout=10)
        logger.close()
    assert logger.stats.lost == 1
    assert "could not write 1 prediction events of churn" in caplog.text
    assert "ArrowInvalid" in caplog.text and SECRET not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)


FORK = textwrap.dedent(
    """
    import os, sys
    from orchestrator.core.spec import MonitoredModelSpec
    from orchestrator.prediction_logger import PredictionLogger
    from orchestrator.specs import load_spec

    spec = MonitoredModelSpec.model_validate(
        {**load_spec("churn").model_dump(), "telemetry": {"enabled": True}}
    )
    logger = PredictionLogger(spec, flush_interval_s=60)
    for i in range(10):
        logger.log(f"parent-{i}", model_version="1", latency_ms=1.0)
    pid = os.fork()
    if pid == 0:  # the child: its own writer, not the parent's queue
        for i in range(5):
            logger.log(f"child-{i}", model_version="1", latency_ms=1.0)
        ok = logger.flush(timeout=10) and logger.stats.written == 5
        logger.close()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    logger.close()
    sys.exit(os.waitstatus_to_exitcode(status) or (logger.stats.written != 10))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_writes_its_own_events_once(home):
    child = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-2000:]
    store = TelemetryStore(home / "data" / "churn" / "telemetry")
    ids = [
        i for day in store.days() for i in store.read_events(day).column("request_id").to_pylist()
    ]
    assert sorted(ids) == sorted(
        [f"parent-{i}" for i in range(10)] + [f"child-{i}" for i in range(5)]
    )
