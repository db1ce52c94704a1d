"""The serving SDK: record one prediction event per request, off the request path.

    logger = PredictionLogger("churn")
    logger.log(request_id, model_version="3", latency_ms=12.5, score=0.81, prediction=1,
               features={...}, subject_id=user_id)

`log` only queues a tuple and returns: it never blocks and never raises for bad data. A daemon
thread validates the queued events in batches (the prediction-event contract of
`orchestrator.core.telemetry`), hashes identifiers, drops personal data, and writes the valid
rows to the model's telemetry partitions and the rejected ones, with their reasons, to
quarantine. A full queue drops the event and counts it; the count is written with the next file.
"""

import atexit
import datetime as dt
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from orchestrator.adapters.home import HomeLayout
from orchestrator.adapters.telemetry_store import TelemetryStore
from orchestrator.core.errors import ConfigError
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.telemetry import (
    BatchResult,
    EventSchema,
    Redactor,
    column_from_values,
    columns_from_mappings,
    columns_from_records,
    raw_table,
    resolve_key,
    validate_batch,
)

log = logging.getLogger(__name__)

# The order of the tuple `log` queues (one tuple per event: cheaper to build than a dict).
_FIELDS = (
    "timestamp",
    "request_id",
    "model_version",
    "latency_ms",
    "status",
    "prediction",
    "score",
    "features",
    "segments",
    "subject_id",
    "trace_id",
    "fallback",
    "fields",
)


@dataclass(frozen=True)
class LoggerStats:
    """`logged` counts every call of `log`; once flushed, logged = written + rejected + dropped
    + lost (events of batches whose write failed, also counted in `write_errors`)."""

    logged: int
    dropped: int
    written: int
    rejected: int
    write_errors: int
    lost: int


class _Flush:
    """A marker among the events: the writer sets `done` once every event before it is
    written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class PredictionLogger:
    """Records prediction events of one monitored model from a serving process.

    Thread-safe: any number of threads may call `log` at once. `close()` (also at exit, or
    leaving a `with` block) writes what is queued and stops the writer thread.
    """

    def __init__(
        self,
        model: str | MonitoredModelSpec,
        *,
        home: str | Path | None = None,
        key: bytes | None = None,
        queue_size: int = 100_000,
        flush_interval_s: float = 1.0,
        batch_size: int = 50_000,
        demo: bool = False,
    ):
        if isinstance(model, str):
            from orchestrator.specs import load_spec

            model = load_spec(model)
        if not model.telemetry.enabled:
            raise ConfigError(
                f"{model.name}: telemetry.enabled is false; enable it in the model's defs.yaml "
                "before recording prediction events"
            )
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ConfigError("queue_size and batch_size must be >= 1, flush_interval_s > 0")
        self.spec = model
        self.schema = EventSchema.from_spec(model)
        self._redactor = Redactor(
            key if key is not None else resolve_key(model.telemetry.hmac_key_env, demo=demo)
        )
        root = HomeLayout.resolve(str(home) if home else None).data / model.name / "telemetry"
        self.store = TelemetryStore(root, self.schema.arrow_schema)
        self._pii = frozenset(self.schema.pii)
        self._queue_size = queue_size
        self._flush_interval = flush_interval_s
        self._batch_size = batch_size
        # A deque, not queue.Queue: append and popleft are atomic without a lock (CPython
        # documents deques as thread-safe at both ends), about 0.1 us against 1.5 us for
        # Queue.put_nowait with its mutex and condition, and the writer takes everything
        # waiting in one pass instead of one get() per event. It is bounded by a length check
        # in `log`, not by maxlen, which would silently discard the oldest event: a refused
        # event must be counted. Threads racing past the check can overshoot the bound by one
        # event each, which is harmless.
        self._events: deque = deque()
        self._wake = threading.Event()  # set when a batch is waiting, on flush and on close
        self._lock = threading.Lock()  # drop counters (the rare path) and close()
        self._dropped = 0
        self._dropped_recorded = 0
        self._received = 0  # events the writer took off the deque
        self._written = 0
        self._rejected = 0
        self._write_errors = 0
        self._lost = 0
        self._closed = False
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"driftgate-prediction-logger-{model.name}", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def log(
        self,
        request_id: str,
        *,
        model_version: str,
        latency_ms: float,
        status: str = "ok",
        prediction: float | None = None,
        score: float | None = None,
        features: dict | None = None,
        segments: dict | None = None,
        subject_id: str | None = None,
        trace_id: str | None = None,
        fallback: str | None = None,
        timestamp: float | dt.datetime | str | None = None,
        **fields,
    ) -> bool:
        """Queue one event (validated later, off the request path); False when it was dropped
        because the queue is full or the logger is closed. Never blocks, never raises."""
        events = self._events
        waiting = len(events)
        if waiting >= self._queue_size or self._closed:
            with self._lock:
                self._dropped += 1
            return False
        events.append(
            (
                time.time() if timestamp is None else timestamp,
                request_id,
                model_version,
                latency_ms,
                status,
                prediction,
                score,
                features,
                segments,
                subject_id,
                trace_id,
                fallback,
                fields,
            )
        )
        if waiting + 1 >= self._batch_size and not self._wake.is_set():
            self._wake.set()  # a batch is waiting (Event.set takes a lock: only then)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event logged before this call is written (or quarantined); False
        if `timeout` seconds passed first."""
        if not self._thread.is_alive():
            return True
        marker = _Flush()
        self._events.append(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer; later calls of `log` return False."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping = True
        self._wake.set()
        self._thread.join()
        # Events appended by a `log` that raced this close, after the writer's last pass.
        self._drain()
        if self._unrecorded_drops():
            self._write([])
        atexit.unregister(self.close)

    def __enter__(self) -> "PredictionLogger":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def stats(self) -> LoggerStats:
        """Exact once flushed or closed; while events are in flight, `logged` may count a
        flush marker or miss an event being taken off the queue."""
        with self._lock:
            dropped = self._dropped
        return LoggerStats(
            logged=self._received + len(self._events) + dropped,
            dropped=dropped,
            written=self._written,
            rejected=self._rejected,
            write_errors=self._write_errors,
            lost=self._lost,
        )

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain()
            if self._unrecorded_drops():
                self._write([])
        self._drain()

    def _drain(self) -> None:
        """Write everything waiting, in batches of at most batch_size; release each flush
        marker once the events before it are written."""
        events = self._events
        pending: list[tuple] = []
        for _ in range(len(events)):
            item = events.popleft()
            if isinstance(item, _Flush):
                if pending:
                    self._write(pending)
                    pending = []
                item.done.set()
                continue
            pending.append(item)
            if len(pending) >= self._batch_size:
                self._write(pending)
                pending = []
        if pending:
            self._write(pending)

    def _unrecorded_drops(self) -> int:
        with self._lock:
            return self._dropped - self._dropped_recorded

    def _write(self, events: list[tuple]) -> None:
        """Validate, write and quarantine one batch; a failure is logged and counted, never
        raised: the host process keeps serving."""
        first_row = self._received
        self._received += len(events)
        dropped = self._unrecorded_drops()
        rejected = written = 0
        try:
            if events:
                table = self._table(events)
                result = validate_batch(table, self.schema, self._redactor, first_row=first_row)
            else:  # only drops to record
                result = BatchResult(
                    self.schema.arrow_schema.empty_table(),
                    self.schema.rejected_schema.empty_table(),
                )
            self.store.write_quarantine(result.rejected)
            rejected = result.rejected.num_rows
            self.store.write_events(result.valid, dropped=dropped)
            written = result.valid.num_rows
        except Exception:
            # Disk full, permissions, a bug: what is not yet on disk is lost, the host goes on.
            lost = len(events) - rejected
            self._write_errors += 1
            self._lost += lost
            log.exception(
                "driftgate: could not write %d prediction events of %s; they are lost "
                "(%d dropped events stay to be recorded with a later file)",
                lost,
                self.spec.name,
                dropped,
            )
            return
        finally:
            self._rejected += rejected
            self._written += written
        with self._lock:
            self._dropped_recorded += dropped

    def _table(self, events: list[tuple]) -> pa.Table:
        """Raw Arrow columns of a batch: one list per field, nested dicts flattened, personal
        data (declared pii) never turned into a column."""
        values = dict(zip(_FIELDS, zip(*events, strict=True), strict=True))
        columns = {
            name: column_from_values(list(values[name]))
            for name in _FIELDS
            if name not in ("features", "segments", "fields")
        }
        columns.update(columns_from_mappings(list(values["features"]), "features"))
        columns.update(columns_from_mappings(list(values["segments"]), "segments"))
        extra = columns_from_records(list(values["fields"]), drop=self._pii)
        for name, column in extra.items():
            columns.setdefault(name, column)  # `log`'s own arguments cannot be repeated
        return raw_table(columns, len(events))
