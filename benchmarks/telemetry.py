"""`make bench` (telemetry): the serving SDK's cost on the request path, and batch ingestion.

Each figure has a baseline measured in the same run, on the same machine:

- `PredictionLogger.log`: 200k calls in one thread with a realistic event (15 features, 2
  segments, a subject id), each timed with perf_counter_ns, into a queue that holds them all
  (drops, if any, are reported apart); the baseline is the same call into a function that only
  appends the tuple to a list. Targets: median < 20 us, p99 < 200 us.
- the same from 4 threads at once into a small queue: throughput, the events dropped, and that
  every call is accounted for (written, rejected, dropped or lost).
- `ingest` of 1M events end to end (read, validate, hash identifiers, write Parquet), from
  Parquet (target < 5 s) and CSV, and 200k nested JSON lines; the baseline is pyarrow reading
  the same file.

    python -m benchmarks.telemetry [--events 1000000] [--calls 200000]

The exit status is 1 if any target failed.
"""

import argparse
import datetime as dt
import inspect
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from benchmarks.drift import best_of
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.prediction_logger import _FIELDS, PredictionLogger
from orchestrator.specs import load_spec
from orchestrator.telemetry_ingest import ingest

KEY = b"benchmark-key-not-the-demo-0f3a9c"  # explicit, so nothing falls back to the demo key
MEDIAN_TARGET_US, P99_TARGET_US, INGEST_TARGET_S = 20.0, 200.0, 5.0
console = Console(width=160)


def bench_spec() -> MonitoredModelSpec:
    telemetry = {"enabled": True, "identifiers": ["account_id"], "pii": ["email"]}
    return MonitoredModelSpec.model_validate(
        {**load_spec("churn").model_dump(), "telemetry": telemetry}
    )


def request_events(spec: MonitoredModelSpec, count: int, seed: int = 0) -> list[dict]:
    """Keyword arguments of `count` calls: what a serving process has at hand per request."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(count):
        features = {
            f.name: float(rng.normal(10, 3))
            if f.kind == "numerical"
            else str(rng.choice(f.allowed_values or ["card", "bank", "cash"]))
            for f in spec.features
        }
        events.append(
            {
                "request_id": f"req-{seed}-{i}",
                "model_version": "3",
                "latency_ms": float(rng.gamma(2.0, 15.0)),
                "prediction": 1.0,
                "score": 0.73,
                "features": features,
                "segments": {s: features[s] for s in spec.segments},
                "subject_id": f"user-{i % 50_000}",
            }
        )
    return events


def timed_calls(call: Callable, events: list[dict]) -> np.ndarray:
    samples = np.empty(len(events), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, event in enumerate(events):
        start = clock()
        call(
            event["request_id"],
            model_version=event["model_version"],
            latency_ms=event["latency_ms"],
            prediction=event["prediction"],
            score=event["score"],
            features=event["features"],
            segments=event["segments"],
            subject_id=event["subject_id"],
        )
        samples[i] = clock() - start
    return samples


def baseline_log(sink: list) -> Callable[..., bool]:
    """A function with `log()`'s signature that only appends the tuple `log()` queues, built
    from the logger's own signature and field order (`_FIELDS`) so that the two cannot
    diverge: the floor a call of `log()` cannot beat."""
    signature = inspect.signature(PredictionLogger.log)
    parameters = [
        p.replace(annotation=inspect.Parameter.empty)
        for p in signature.parameters.values()
        if p.name != "self"
    ]
    plain = signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)
    items = [
        "time.time() if timestamp is None else timestamp" if name == "timestamp" else name
        for name in _FIELDS
    ]
    source = f"def baseline{plain}:\n    append(({', '.join(items)},))\n    return True\n"
    namespace = {"time": time, "append": sink.append}
    exec(source, namespace)  # noqa: S102 (generated from the logger's signature, no input)
    return namespace["baseline"]


def log_scenarios(spec: MonitoredModelSpec, calls: int, home: Path) -> list[list[str]]:
    events = request_events(spec, calls)
    floor = timed_calls(baseline_log([]), events) / 1000
    # A queue that holds every call: the figures are the cost of a call, not of a refusal.
    with PredictionLogger(spec, home=home, key=KEY, queue_size=calls + 1) as logger:
        ours = timed_calls(logger.log, events) / 1000
    stats = logger.stats
    rows = []
    for name, q, target in (("median", 50, MEDIAN_TARGET_US), ("p99", 99, P99_TARGET_US)):
        value, base = np.percentile(ours, q), np.percentile(floor, q)
        rows.append(
            [
                f"log(), 1 thread: {name} per call",
                f"{calls:,} calls",
                f"{value:.2f} us",
                f"{base:.2f} us",
                f"{value / base:.1f}",
                f"{1e6 / ours.mean():,.0f} calls/s",
                f"< {target:.0f} us",
                _verdict(value < target),
                f"written {stats.written:,}, dropped {stats.dropped:,} (queue {calls + 1:,})",
            ]
        )
    rows.append(writer_scenario(spec, events, home))
    rows.append(concurrent_scenario(spec, calls, home))
    return rows


def writer_scenario(spec: MonitoredModelSpec, events: list[dict], home: Path) -> list[str]:
    """What the writer thread sustains (validate, hash, write) with a queue that never fills:
    the rate above which a process drops events."""
    logger = PredictionLogger(spec, home=home, key=KEY, queue_size=len(events) + 1)
    start = time.perf_counter()
    for event in events:
        logger.log(**event)
    logged = time.perf_counter() - start
    logger.close()
    seconds = time.perf_counter() - start
    stats = logger.stats
    return [
        "log() then close(): writer",
        f"{len(events):,} calls",
        f"{seconds:.3f} s",
        f"{logged:.3f} s",
        f"{seconds / logged:.1f}",
        f"{stats.written / seconds:,.0f} events/s",
        "no drops",
        _verdict(stats.dropped == 0 and stats.written == len(events)),
        "baseline: the log() calls alone; the rest is the writer catching up",
    ]


def concurrent_scenario(spec: MonitoredModelSpec, calls: int, home: Path) -> list[str]:
    threads, per_thread, queue_size = 4, calls // 4, 10_000
    batches = [request_events(spec, per_thread, seed=s + 1) for s in range(threads)]
    logger = PredictionLogger(spec, home=home, key=KEY, queue_size=queue_size)

    def serve(events: list[dict]) -> None:
        for event in events:
            logger.log(**event)

    workers = [threading.Thread(target=serve, args=(b,)) for b in batches]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    logger.close()
    stats = logger.stats
    return [
        f"log(), {threads} threads, queue {queue_size:,}",
        f"{threads * per_thread:,} calls",
        f"{seconds:.3f} s",
        "",
        "",
        f"{threads * per_thread / seconds:,.0f} calls/s",
        "never blocks, all counted",
        _verdict(
            stats.logged == threads * per_thread
            and stats.logged == stats.written + stats.rejected + stats.dropped + stats.lost
        ),
        f"written {stats.written:,}, dropped {stats.dropped:,} "
        f"({stats.dropped / stats.logged:.0%}), lost {stats.lost:,}",
    ]


def event_table(spec: MonitoredModelSpec, rows: int, seed: int = 1) -> pa.Table:
    """A day of logged events as a serving stack would keep them: flat feature columns, a
    subject among 250k users, an account among 100k, an e-mail column (dropped on ingest)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-02", tz="UTC").value // 1000
    users = rng.integers(0, 250_000, rows)
    columns = {
        "request_id": pa.array(np.char.add("req-", np.arange(rows).astype(str))),
        "model_version": pa.array(np.where(rng.random(rows) < 0.9, "3", "4")),
        "timestamp": pa.array(
            np.sort(start + rng.integers(0, 86_400_000_000, rows)), pa.timestamp("us", "UTC")
        ),
        "latency_ms": rng.gamma(2.0, 15.0, rows),
        "status": pa.array(rng.choice(["ok", "error", "timeout"], rows, p=[0.98, 0.015, 0.005])),
        "subject_id": pa.array(np.char.add("user-", users.astype(str))),
        "account_id": pa.array(rng.integers(0, 100_000, rows)),
        "email": pa.array(np.char.add(np.char.add("user", users.astype(str)), "@example.com")),
        "prediction": rng.integers(0, 2, rows).astype(float),
        "score": rng.random(rows),
    }
    for feature in spec.features:
        if feature.kind == "numerical":
            columns[f"feature.{feature.name}"] = rng.normal(10, 3, rows)
        else:
            values = feature.allowed_values or ["card", "bank", "cash"]
            columns[f"feature.{feature.name}"] = pa.array(rng.choice(values, rows))
    return pa.table(columns)


def write_jsonl(table: pa.Table, path: Path, spec: MonitoredModelSpec) -> None:
    """Nested JSON lines (`features`, `segments` objects), as a logging pipeline emits them."""
    frame = table.to_pandas()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    names = [f"feature.{f}" for f in spec.feature_names]
    scalars = [c for c in frame.columns if c not in names]
    with path.open("w") as handle:
        for record, features in zip(
            frame[scalars].to_dict("records"), frame[names].to_dict("records"), strict=True
        ):
            record["features"] = {k.removeprefix("feature."): v for k, v in features.items()}
            record["segments"] = {s: record["features"][s] for s in spec.segments}
            handle.write(json.dumps(record) + "\n")


def ingest_row(
    name: str, spec: MonitoredModelSpec, path: Path, workdir: Path, baseline: float, target
) -> list[str]:
    runs = []
    for attempt in range(2):
        home = workdir / f"home-{path.stem}-{attempt}"
        start = time.perf_counter()
        report = ingest(spec, [path], home=home, key=KEY)
        runs.append(time.perf_counter() - start)
    seconds = min(runs)
    return [
        f"ingest, {name}",
        f"{report.events:,} events",
        f"{seconds:.3f} s",
        f"{baseline:.3f} s",
        f"{seconds / baseline:.1f}",
        f"{report.events / seconds:,.0f} events/s",
        f"< {target:.0f} s" if target else "",
        _verdict(seconds < target) if target else "",
        f"{report.accepted:,} accepted, {report.rejected:,} rejected; "
        f"{path.stat().st_size / 1e6:.0f} MB file",
    ]


def ingest_scenarios(spec: MonitoredModelSpec, events: int, workdir: Path) -> list[list[str]]:
    table = event_table(spec, events)
    parquet, csv_path, jsonl = (
        workdir / n for n in ("events.parquet", "events.csv", "events.jsonl")
    )
    pq.write_table(table, parquet)
    pcsv.write_csv(table, csv_path)
    json_rows = min(events, 200_000)
    write_jsonl(table.slice(0, json_rows), jsonl, spec)
    return [
        ingest_row(
            "Parquet",
            spec,
            parquet,
            workdir,
            best_of(lambda: pq.read_table(parquet), 3),
            INGEST_TARGET_S,
        ),
        ingest_row(
            "CSV", spec, csv_path, workdir, best_of(lambda: pcsv.read_csv(csv_path), 3), None
        ),
        ingest_row(
            "JSON lines, nested",
            spec,
            jsonl,
            workdir,
            best_of(lambda: pjson.read_json(jsonl), 3),
            None,
        ),
    ]


PASS, FAIL = "[green]PASS[/]", "[bold red]FAIL[/]"


def _verdict(passed: bool) -> str:
    return PASS if passed else FAIL


def main() -> int:
    """Print the table; 1 (the exit status) if any target failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    spec = bench_spec()
    table = Table(title="driftgate telemetry benchmark")
    for name in (
        "scenario",
        "size",
        "driftgate",
        "baseline",
        "ratio",
        "rate",
        "target",
        "result",
        "note",
    ):
        table.add_column(name)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["DRIFTGATE_HOME"] = str(workdir / "home")
        rows = log_scenarios(spec, args.calls, workdir / "home")
        rows += ingest_scenarios(spec, args.events, workdir)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"baselines: log() against appending the same tuple to a list; ingest against pyarrow "
        f"reading the same file. {os.cpu_count()} CPUs, {dt.datetime.now(dt.UTC):%Y-%m-%d}."
    )
    return _exit_status(rows)


def _exit_status(rows: list[list[str]]) -> int:
    failed = [row[0] for row in rows if row[7] == FAIL]
    if failed:
        console.print(f"[bold red]targets failed:[/] {'; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
