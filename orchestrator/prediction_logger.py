"""The serving SDK: record one prediction event per request, off the request path.

    logger = PredictionLogger("churn")
    logger.log(request_id, model_version="3", latency_ms=12.5, score=0.81, prediction=1,
               features={...}, subject_id=user_id)

`log` only queues a tuple and returns: it never blocks and never raises for bad data. A daemon
thread validates the queued events in batches (the prediction-event contract of
`orchestrator.core.telemetry`), hashes identifiers, drops personal data, and writes the valid
rows to the model's telemetry partitions and the rejected ones, with their reasons, to
quarantine. A full queue drops the event and counts it; the count is written with the next file.

Processes: a child forked from a process holding a logger gets a fresh queue, counters and
writer thread of its own (the events queued at the fork stay the parent's to write). A child
that ends with `os._exit`, as multiprocessing's children do, skips `atexit`: call `close()`
before it ends.
"""

import atexit
import datetime as dt
import logging
import os
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from orchestrator.adapters.home import HomeLayout
from orchestrator.adapters.telemetry_store import TelemetryStore
from orchestrator.core.errors import ConfigError
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.telemetry import (
    DEMO_KEY,
    BatchResult,
    EventSchema,
    Problem,
    Redactor,
    check_key,
    column_from_values,
    columns_from_mappings,
    columns_from_records,
    raw_table,
    resolve_key,
    unreadable_rows,
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
_MAPPINGS = ("features", "segments", "fields")
_POLL_S = 0.1  # how often a waiting flush() checks that the writer is still alive

# Loggers alive in this process, for the fork hook (weakly: the hook must not keep them).
_LIVE: "weakref.WeakSet[PredictionLogger]" = weakref.WeakSet()
_FORK_HOOK = threading.Lock()
_fork_hook_registered = False


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
    leaving a `with` block) writes what is queued and stops the writer thread; it waits at
    most `close_timeout_s` for the writer, so that a stuck file system cannot hang the
    process's exit (what the writer has not written by then is reported and may be lost).
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
        close_timeout_s: float = 30.0,
        demo: bool = False,
    ):
        if isinstance(model, str):
            from orchestrator.specs import load_spec

            model = load_spec(model)
        _check_settings(model, queue_size, batch_size, flush_interval_s, close_timeout_s)
        self.spec = model
        self.schema = EventSchema.from_spec(model)
        self._redactor = Redactor(self._key(key, demo))
        layout = HomeLayout.resolve(str(home) if home else None)
        self.store = TelemetryStore(layout.telemetry(model.name), self.schema.arrow_schema)
        self._pii = frozenset(self.schema.pii)
        self._queue_size = queue_size
        self._flush_interval = flush_interval_s
        self._batch_size = batch_size
        # The writer wakes at a full batch, or at half the queue when the queue is smaller:
        # waiting for a batch the queue cannot hold would drop events until the next interval.
        self._wake_at = min(batch_size, max(1, queue_size // 2))
        self._close_timeout = close_timeout_s
        self._closed = False
        self._start()
        _register(self)
        atexit.register(self.close)

    def _key(self, key: bytes | None, demo: bool) -> bytes:
        if key is not None:
            return check_key(key)
        key = resolve_key(self.spec.telemetry.hmac_key_env, demo=demo)
        if key == DEMO_KEY:
            log.warning(
                "driftgate: prediction events of %s are hashed with the public demo key: "
                "identifiers are not protected; set $%s for real traffic",
                self.spec.name,
                self.spec.telemetry.hmac_key_env,
            )
        return key

    def _start(self) -> None:
        """A fresh queue, counters and writer thread (at start, and in a forked child)."""
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
        self._stopping = False
        self._finished = self._closed  # the writer is done and the last drain happened
        self._thread = threading.Thread(
            target=self._run, name=f"driftgate-prediction-logger-{self.spec.name}", daemon=True
        )
        if not self._closed:
            self._thread.start()

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
        # Copies (~0.1 us each): the caller may reuse or change its dicts once `log` returns,
        # and the event must be what it was when logged.
        if features is not None:
            features = dict(features) if type(features) is dict else _snapshot(features)
        if segments is not None:
            segments = dict(segments) if type(segments) is dict else _snapshot(segments)
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
        if waiting + 1 >= self._wake_at and not self._wake.is_set():
            self._wake.set()  # a batch is waiting (Event.set takes a lock: only then)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event logged before this call is written (or quarantined); False
        if `timeout` seconds passed first, or if no writer is left to write what is queued."""
        if not self._thread.is_alive():
            return self._settled()
        marker = _Flush()
        self._events.append(marker)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if marker.done.wait(max(left, 0.0)):
                return True
            if not self._thread.is_alive():  # it stopped (close) before reaching the marker
                return marker.done.is_set() or self._settled()
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        """Write what is queued and stop the writer; later calls of `log` return False."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping = True
        self._wake.set()
        self._thread.join(self._close_timeout)
        if self._thread.is_alive():
            log.warning(
                "driftgate: the prediction-event writer of %s did not finish within %g s "
                "(a stuck file system?); the %d events still queued may be lost",
                self.spec.name,
                self._close_timeout,
                len(self._events),
            )
            return
        # Events appended by a `log` that raced this close, after the writer's last pass.
        self._drain()
        self._discard_leftovers()
        self._finished = True
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
        flush marker or miss an event being taken off the queue. After close, an event a
        racing `log` queued too late to be written counts as dropped."""
        with self._lock:
            dropped = self._dropped
        if self._finished:
            late = sum(not isinstance(item, _Flush) for item in list(self._events))
            logged, dropped = self._received + dropped + late, dropped + late
        else:
            logged = self._received + len(self._events) + dropped
        return LoggerStats(
            logged=logged,
            dropped=dropped,
            written=self._written,
            rejected=self._rejected,
            write_errors=self._write_errors,
            lost=self._lost,
        )

    def _settled(self) -> bool:
        """No event left in the queue (with no writer, nothing will take one off it)."""
        return not any(not isinstance(item, _Flush) for item in list(self._events))

    def _discard_leftovers(self) -> None:
        """Count what a racing `log` queued after the last drain as dropped: no writer is
        left to write it."""
        events = self._events
        while events:
            item = events.popleft()
            if isinstance(item, _Flush):
                item.done.set()
                continue
            with self._lock:
                self._dropped += 1

    def _after_fork_in_child(self) -> None:
        """The writer thread did not survive the fork, the locks may have been held by a
        thread that no longer exists, and the queued events are the parent's to write."""
        self._start()

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
            result = self._validated(events, first_row)
            self.store.write_quarantine(result.rejected)
            rejected = result.rejected.num_rows
            self.store.write_events(result.valid, dropped=dropped)
            written = result.valid.num_rows
        except Exception as error:
            # Disk full, permissions, a bug: what is not yet on disk is lost, the host goes on.
            self._count_failure(error, len(events) - rejected, dropped)
            return
        finally:
            self._rejected += rejected
            self._written += written
        with self._lock:
            self._dropped_recorded += dropped

    def _count_failure(self, error: Exception, lost: int, dropped: int) -> None:
        """Count and log a failed write: the error's type and where it was raised, never its
        message (see `_described`), so no traceback is logged through `log.exception`."""
        self._write_errors += 1
        self._lost += lost
        log.error(
            "driftgate: could not write %d prediction events of %s; they are lost "
            "(%d dropped events stay to be recorded with a later file): %s\n%s",
            lost,
            self.spec.name,
            dropped,
            _described(error),
            "".join(traceback.format_tb(error.__traceback__)),
        )

    def _validated(self, events: list[tuple], first_row: int) -> BatchResult:
        if not events:  # only drops to record
            return _empty_result(self.schema)
        try:
            table = self._table(events)
            return validate_batch(table, self.schema, self._redactor, first_row=first_row)
        except Exception as error:
            # A client value nothing foresaw broke the batch: judge each event alone, so that
            # it costs that event, not the batch (duplicate request ids go unnoticed then).
            log.warning(
                "driftgate: a batch of %d prediction events of %s could not be validated "
                "(%s); validating them one by one",
                len(events),
                self.spec.name,
                type(error).__name__,
            )
        results = [self._validated_alone(e, first_row + i) for i, e in enumerate(events)]
        return BatchResult(
            pa.concat_tables([r.valid for r in results]),
            pa.concat_tables([r.rejected for r in results]),
        )

    def _validated_alone(self, event: tuple, row: int) -> BatchResult:
        try:
            table = self._table([event])
            return validate_batch(table, self.schema, self._redactor, first_row=row)
        except Exception as error:
            reason = (
                f"event could not be validated ({type(error).__name__}); "
                "quarantined without its values"
            )
            rejected = unreadable_rows(self.schema, [Problem(row, "event", reason)])
            return BatchResult(self.schema.arrow_schema.empty_table(), rejected)

    def _table(self, events: list[tuple]) -> pa.Table:
        """Raw Arrow columns of a batch: one list per field, each built from plain values with
        an explicit type, personal data (declared pii) never turned into a column."""
        values = dict(zip(_FIELDS, zip(*events, strict=True), strict=True))
        columns = [
            (name, column_from_values(values[name], timestamps=name == "timestamp"))
            for name in _FIELDS
            if name not in _MAPPINGS
        ]
        columns += columns_from_mappings(values["features"], "features")
        columns += columns_from_mappings(values["segments"], "segments")
        # `log`'s own arguments cannot be repeated in **fields: Python refuses the call.
        columns += columns_from_records(values["fields"], drop=self._pii)
        return raw_table(columns, len(events))


def _check_settings(
    model: MonitoredModelSpec,
    queue_size: int,
    batch_size: int,
    flush_interval_s: float,
    close_timeout_s: float,
) -> None:
    if not model.telemetry.enabled:
        raise ConfigError(
            f"{model.name}: telemetry.enabled is false; enable it in the model's defs.yaml "
            "before recording prediction events"
        )
    for name, value in (("queue_size", queue_size), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    for name, value in (
        ("flush_interval_s", flush_interval_s),
        ("close_timeout_s", close_timeout_s),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")


def _snapshot(value: object) -> object:
    """A copy of a mapping that is not a plain dict; anything else as it is (validation
    rejects what is not a mapping)."""
    if isinstance(value, Mapping):
        try:
            return dict(value)
        except Exception:  # a client's mapping can raise anything: validation rejects it
            return value
    return value


def _empty_result(schema: EventSchema) -> BatchResult:
    return BatchResult(schema.arrow_schema.empty_table(), schema.rejected_schema.empty_table())


def _described(error: BaseException) -> str:
    """The error's type, and for an OS error its text and path; never the message of anything
    else, which may quote an event's values (Arrow's messages do)."""
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return f"{type(error).__name__}: {error.strerror or 'OS error'}{where}"
    return f"{type(error).__name__} (its message is not logged: it may quote event values)"


def _register(logger: PredictionLogger) -> None:
    """Track `logger` for the fork hook, registering the hook once per process."""
    global _fork_hook_registered
    with _FORK_HOOK:
        _LIVE.add(logger)
        if not _fork_hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_registered = True


def _after_fork_in_child() -> None:
    global _FORK_HOOK
    _FORK_HOOK = threading.Lock()  # a parent thread may have held it at the fork
    for logger in list(_LIVE):
        logger._after_fork_in_child()
