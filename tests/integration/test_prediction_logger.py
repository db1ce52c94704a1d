"""The serving SDK against a real DRIFTGATE_HOME: concurrency, privacy, crash safety, refusals."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

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


def test_refuses_to_start_without_a_key_or_with_telemetry_disabled(home, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=r"\$DRIFTGATE_TELEMETRY_KEY is not set"):
        PredictionLogger(telemetry_spec())
    with pytest.raises(ConfigError, match=r"\$MY_SERVING_KEY is not set"):
        PredictionLogger(telemetry_spec(hmac_key_env="MY_SERVING_KEY"))
    with pytest.raises(ConfigError, match="churn: telemetry.enabled is false"):
        PredictionLogger(telemetry_spec(enabled=False), demo=True)
    with PredictionLogger(telemetry_spec(), demo=True) as logger:  # the demo key, by choice
        assert logger.log("r", model_version="1", latency_ms=1.0)


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
