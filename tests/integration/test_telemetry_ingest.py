"""Batch ingestion of existing prediction logs: Parquet, CSV and JSON lines, into a real home."""

import datetime as dt
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from orchestrator.adapters.telemetry_store import SOURCE_KEY, TelemetryStore
from orchestrator.cli import app
from orchestrator.core.errors import ConfigError, DataError
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.telemetry import EventSchema
from orchestrator.specs import load_spec
from orchestrator.telemetry_ingest import ingest

pytestmark = pytest.mark.integration
KEY_ENV = "DRIFTGATE_TELEMETRY_KEY"
KEY = "ingest-test-key-0c7d31e2"
EMAIL = "dana.lopez@example.net"
NUMERICAL = ["tenure_months", "monthly_charges", "total_charges", "support_calls"]
NUMERICAL += ["data_usage_gb", "avg_session_minutes", "late_payments", "discount_pct"]
NUMERICAL += ["age", "satisfaction_score"]


@pytest.fixture
def spec() -> MonitoredModelSpec:
    telemetry = {"enabled": True, "identifiers": ["account_id"], "pii": ["email"]}
    return MonitoredModelSpec.model_validate(
        {**load_spec("churn").model_dump(), "telemetry": telemetry}
    )


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DRIFTGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(KEY_ENV, KEY)
    return tmp_path / "home"


def store(home: Path) -> TelemetryStore:
    return TelemetryStore(home / "data" / "churn" / "telemetry")


def flat_rows(count: int, bad: dict[int, dict] | None = None) -> list[dict]:
    """`count` events, 10:00 UTC onwards on 2026-01-02, flat feature columns; `bad` overrides
    fields of some rows."""
    rows = []
    start = dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)
    for i in range(count):
        row = {
            "request_id": f"req-{i}",
            "model_version": "5",
            "timestamp": (start + dt.timedelta(minutes=i)).isoformat(),
            "latency_ms": 10.0 + i,
            "status": "ok",
            "subject_id": f"user-{i % 3}",
            "account_id": f"acct-{i % 2}",
            "email": EMAIL,
            "score": 0.25,
            "prediction": 0.0,
            **{f"feature.{name}": float(i) for name in NUMERICAL},
            "feature.plan": "basic",
            "feature.region": "east",
            "feature.channel": "web",
        }
        row.update((bad or {}).get(i, {}))
        rows.append(row)
    return rows


def all_stored(home: Path) -> tuple[pa.Table, pa.Table]:
    telemetry = store(home)
    events = [telemetry.read_events(day) for day in telemetry.days()]
    quarantine = [telemetry.read_quarantine(day) for day in telemetry.quarantine_days()]
    return (
        pa.concat_tables(events) if events else pa.table({}),
        pa.concat_tables(quarantine) if quarantine else pa.table({}),
    )


BAD = {
    2: {"latency_ms": "slow"},
    5: {"status": "crashed", "score": 3.0},
    6: {"timestamp": "2026-01-02T16:00:00"},
}


def test_parquet_in_chunks_keeps_file_row_numbers(spec, home, tmp_path):
    path = tmp_path / "events.parquet"
    pd.DataFrame(flat_rows(10, BAD)).astype({"latency_ms": str}).to_parquet(path)
    report = ingest(spec, [path], chunk_rows=4)
    assert (report.files, report.events, report.accepted, report.rejected) == (1, 10, 7, 3)
    events, quarantine = all_stored(home)
    assert events.num_rows == 7 and events.schema == EventSchema.from_spec(spec).arrow_schema
    assert sorted(events.column("request_id").to_pylist()) == sorted(
        f"req-{i}" for i in range(10) if i not in BAD
    )
    rejected = {r["row"]: r for r in quarantine.to_pylist()}
    assert sorted(rejected) == [2, 5, 6]  # row numbers in the file, across chunks of 4
    assert rejected[2]["reason"] == "latency_ms must be a finite number >= 0"
    assert (
        rejected[5]["field"] == "status"
        and "score must be within [0, 1]" in (rejected[5]["reason"])
    )
    assert rejected[6]["reason"].startswith("timestamp has no time zone")
    assert all(
        pq.read_metadata(p).metadata[SOURCE_KEY] == str(path).encode()
        for p in (report.quarantine_files)
    )
    expected = hmac.new(KEY.encode(), b"user-1", hashlib.sha256).hexdigest()
    assert expected in events.column("subject_hash").to_pylist()
    assert "email" not in events.column_names and "email" not in quarantine.column_names


def test_csv_with_text_values_and_a_malformed_row(spec, home, tmp_path):
    path = tmp_path / "events.csv"
    rows = flat_rows(6, {3: {"feature.age": "forty", "latency_ms": -4}})
    rows[4]["timestamp"] = 1767350000.25  # epoch seconds in the same column
    pd.DataFrame(rows).to_csv(path, index=False)
    report = ingest(spec, [path])
    assert (report.events, report.accepted, report.rejected) == (6, 5, 1)
    events, quarantine = all_stored(home)
    assert quarantine.column("row").to_pylist() == [3]
    assert quarantine.column("field").to_pylist() == ["latency_ms"]
    assert quarantine.column("reason").to_pylist() == [
        "latency_ms must be a finite number >= 0; feature.age must be a number"
    ]
    by_id = {r["request_id"]: r for r in events.to_pylist()}
    assert by_id["req-4"]["timestamp"] == dt.datetime(2026, 1, 2, 10, 33, 20, 250000, dt.UTC)
    assert by_id["req-0"]["model_version"] == "5" and by_id["req-1"]["feature.age"] == 1.0
    assert EMAIL.encode() not in b"".join(p.read_bytes() for p in home.rglob("*.parquet"))


def test_jsonl_with_nested_features_and_a_type_that_changes(spec, home, tmp_path):
    path = tmp_path / "events.jsonl"
    lines = []
    for i, row in enumerate(flat_rows(5)):
        nested = {k: v for k, v in row.items() if not k.startswith("feature.")}
        nested["features"] = {k.removeprefix("feature."): v for k, v in row.items() if "." in k}
        nested["segments"] = {"region": "west"} if i == 1 else None
        if i == 3:
            nested["latency_ms"] = "slow"  # Arrow cannot type this column: parsed line by line
            nested["features"]["pager"] = "555-0100"
        lines.append(json.dumps(nested))
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    report = ingest(spec, [path])
    assert (report.events, report.accepted, report.rejected) == (5, 4, 1)
    events, quarantine = all_stored(home)
    assert quarantine.select(["row", "field"]).to_pylist() == [{"row": 3, "field": "latency_ms"}]
    assert "feature.pager is not a field" in quarantine.column("reason")[0].as_py()
    assert b"555-0100" not in b"".join(p.read_bytes() for p in home.rglob("*.parquet"))
    by_id = {r["request_id"]: r for r in events.to_pylist()}
    assert by_id["req-1"]["segment.region"] == "west"
    assert by_id["req-0"]["segment.region"] == "east"  # from the feature of the same name
    assert by_id["req-2"]["feature.tenure_months"] == 2.0


def test_well_typed_jsonl_is_read_by_arrow(spec, home, tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in flat_rows(3)) + "\n")
    assert ingest(spec, [path]).accepted == 3
    epoch = tmp_path / "epoch.jsonl"
    rows = [
        {**r, "request_id": f"e-{i}", "timestamp": 1767348000 + i}
        for i, r in enumerate(flat_rows(2))
    ]
    epoch.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert ingest(spec, [epoch]).accepted == 2
    stored = store(home).read_events("2026-01-02")
    assert (
        dt.datetime(2026, 1, 2, 10, 0, 1, tzinfo=dt.UTC) in stored.column("timestamp").to_pylist()
    )


def test_several_files_add_up_and_the_format_can_be_named(spec, home, tmp_path):
    parquet, text = tmp_path / "a.parquet", tmp_path / "b.log"
    pd.DataFrame(flat_rows(4)).to_parquet(parquet)
    pd.DataFrame(flat_rows(3, {0: {"status": None}})).assign(
        request_id=lambda f: "b-" + f["request_id"]
    ).to_csv(text, index=False)
    with pytest.raises(DataError, match=r"b\.log.*suffix '\.log'.*\.csv.*\.jsonl.*\.parquet"):
        ingest(spec, [parquet, text])
    assert not (home / "data").exists()  # nothing written before every file was recognised
    report = ingest(spec, [text], fmt="csv")
    report_parquet = ingest(spec, [parquet])
    assert (report.events, report.accepted, report.rejected) == (3, 2, 1)
    events, quarantine = all_stored(home)
    assert events.num_rows == report.accepted + report_parquet.accepted == 6
    assert quarantine.num_rows == 1 and quarantine.column("reason")[0].as_py() == (
        "status is required"
    )
    assert len(report_parquet.written) == 1 and report_parquet.written[0].exists()
    with pytest.raises(DataError, match="'xml' is not one of parquet, csv, jsonl"):
        ingest(spec, [text], fmt="xml")


def test_ingest_needs_the_key_and_enabled_telemetry(spec, home, tmp_path, monkeypatch):
    path = tmp_path / "events.parquet"
    pd.DataFrame(flat_rows(2)).to_parquet(path)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=r"\$DRIFTGATE_TELEMETRY_KEY is not set"):
        ingest(spec, [path])
    disabled = spec.model_copy(
        update={"telemetry": spec.telemetry.model_copy(update={"enabled": False})}
    )
    with pytest.raises(ConfigError, match="telemetry.enabled is false"):
        ingest(disabled, [path], key=KEY.encode())
    with pytest.raises(DataError, match="missing.parquet: no such file"):
        ingest(spec, [tmp_path / "missing.parquet"], key=KEY.encode())


def test_cli_reports_counts_and_quarantine_and_exits_2_on_errors(spec, home, tmp_path, monkeypatch):
    # The command loads the spec by name: serve it this test's spec (telemetry on).
    monkeypatch.setattr("orchestrator.specs.load_spec", lambda name: spec)
    path = tmp_path / "events.parquet"
    rows = flat_rows(4)
    rows[1]["latency_ms"] = -1.0
    pd.DataFrame(rows).to_parquet(path)
    result = CliRunner().invoke(app, ["telemetry", "ingest", "churn", str(path)])
    assert result.exit_code == 0, result.output
    assert "4 events from 1 file(s): 3 accepted, 1 rejected" in result.output
    assert "quarantined: " in result.output and "quarantine/date=2026-01-02" in result.output
    assert store(home).read_events("2026-01-02").num_rows == 3
    unknown = tmp_path / "events.xml"
    unknown.write_text("<events/>")
    result = CliRunner().invoke(app, ["telemetry", "ingest", "churn", str(unknown)])
    assert result.exit_code == 2 and "cannot tell the format" in result.output
    result = CliRunner().invoke(app, ["telemetry", "ingest", "churn", str(path), "--format", "xml"])
    assert result.exit_code == 2 and "not one of parquet, csv, jsonl" in result.output
    monkeypatch.delenv(KEY_ENV)
    result = CliRunner().invoke(app, ["telemetry", "ingest", "churn", str(path)])
    assert result.exit_code == 2 and "$DRIFTGATE_TELEMETRY_KEY is not set" in result.output


def test_malformed_csv_rows_are_quarantined_by_number_without_their_text(spec, home, tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame(flat_rows(6, {4: {"latency_ms": -1}})).to_csv(path, index=False)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, b"req-x,5,2026-01-02T10:00:00Z,1.0,ok," + EMAIL.encode() + b"\n")  # row 1
    lines.insert(4, lines[3].rstrip(b"\n") + b",one-too-many\n")  # row 3
    lines.insert(6, lines[5].replace(b"basic", b"b\xffsic"))  # row 5: not UTF-8
    path.write_bytes(b"".join(lines))
    report = ingest(spec, [path], chunk_rows=2)
    assert (report.events, report.accepted, report.rejected) == (9, 5, 4)
    events, quarantine = all_stored(home)
    rejected = quarantine.sort_by("row").select(["row", "field", "reason"]).to_pylist()
    columns = len(flat_rows(1)[0])
    assert rejected == [
        {
            "row": 1,
            "field": "row",
            "reason": f"malformed row: 6 values where the header has {columns} columns",
        },
        {
            "row": 3,
            "field": "row",
            "reason": f"malformed row: {columns + 1} values where the header has {columns} columns",
        },
        {"row": 5, "field": "row", "reason": "malformed row: text that is not UTF-8"},
        {"row": 7, "field": "latency_ms", "reason": "latency_ms must be a finite number >= 0"},
    ]
    assert sorted(events.column("request_id").to_pylist()) == [f"req-{i}" for i in (0, 1, 2, 3, 5)]
    assert EMAIL.encode() not in b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_a_line_that_is_no_json_object_is_quarantined_and_the_rest_stored(spec, home, tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(r) for r in flat_rows(4)]
    lines.insert(1, '{"request_id": "req-9", "email": "' + EMAIL + '"')  # cut short
    lines.insert(3, json.dumps([EMAIL]))
    path.write_text("\n".join(lines) + "\n")
    report = ingest(spec, [path])
    assert (report.events, report.accepted, report.rejected) == (6, 4, 2)
    _, quarantine = all_stored(home)
    assert quarantine.select(["row", "field", "reason"]).to_pylist() == [
        {"row": 1, "field": "row", "reason": "malformed row: not valid JSON"},
        {"row": 3, "field": "row", "reason": "malformed row: not a JSON object"},
    ]
    assert EMAIL.encode() not in b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_a_file_that_fails_midway_leaves_nothing_and_no_cause_quoting_it(spec, home, tmp_path):
    path = tmp_path / "events.parquet"
    rows = flat_rows(10, {1: {"latency_ms": -1.0}, 7: {"status": EMAIL}})
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=5, compression="NONE")
    offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 8] = b"\xff" * 8  # the second row group's first page header
    path.write_bytes(bytes(data))
    good = tmp_path / "good.parquet"
    pd.DataFrame(flat_rows(3)).assign(request_id=["g0", "g1", "g2"]).to_parquet(good)
    with pytest.raises(DataError, match="events.parquet: cannot read it as parquet") as caught:
        ingest(spec, [good, path], chunk_rows=5)
    # Arrow's exception is not kept as the cause: its message may quote a row.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    events, quarantine = all_stored(home)
    assert events.column("request_id").to_pylist() == ["g0", "g1", "g2"]  # the file before
    assert quarantine.num_rows == 0  # row 1 of the failed file was rejected, then undone
    assert not [p for p in home.rglob("*.tmp")]


def test_a_repeated_csv_column_rejects_rows_that_give_it_twice(spec, home, tmp_path):
    path = tmp_path / "events.csv"
    frame = pd.DataFrame(flat_rows(3)).assign(score=[0.25, None, 0.5])
    # `email` twice too: personal data is dropped however often it comes.
    again = pd.DataFrame({"score": [None, 0.75, 0.5], "email": EMAIL})
    pd.concat([frame, again], axis=1).to_csv(path, index=False)
    report = ingest(spec, [path])
    assert (report.events, report.accepted, report.rejected) == (3, 2, 1)
    events, quarantine = all_stored(home)
    assert events.select(["request_id", "score"]).sort_by("request_id").to_pylist() == [
        {"request_id": "req-0", "score": 0.25},
        {"request_id": "req-1", "score": 0.75},
    ]
    assert quarantine.select(["row", "reason"]).to_pylist() == [
        {
            "row": 2,
            "reason": "score is given more than once (a repeated column); send each field once",
        }
    ]


def test_jsonl_strings_that_look_like_dates_stay_strings(spec, home, tmp_path):
    path = tmp_path / "events.jsonl"
    big = 2**53 + 1
    rows = []
    for i, row in enumerate(flat_rows(3)):
        nested = {k: v for k, v in row.items() if not k.startswith("feature.")}
        nested["features"] = {k.removeprefix("feature."): v for k, v in row.items() if "." in k}
        nested.update(request_id=f"2026-01-0{i + 2}T10:00:00", model_version="2026-01-02")
        nested.update(trace_id="2026-01-02 10:00:00", account_id=big + i, subject_id="2026-01-02")
        nested["features"]["plan"] = "2026-01-02"
        nested["segments"] = {"region": "2026-01-02"}
        rows.append(nested)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = ingest(spec, [path])
    assert (report.accepted, report.rejected) == (3, 0)
    events, _ = all_stored(home)
    first = events.sort_by("request_id").to_pylist()[0]
    assert (first["request_id"], first["model_version"]) == ("2026-01-02T10:00:00", "2026-01-02")
    assert (first["feature.plan"], first["segment.region"]) == ("2026-01-02", "2026-01-02")
    assert first["trace_id"] == "2026-01-02 10:00:00"
    digest = hmac.new(KEY.encode(), str(big).encode(), hashlib.sha256).hexdigest()
    assert first["account_id_hash"] == digest  # an integer id read exactly


def test_a_key_given_directly_must_be_long_enough(spec, home, tmp_path):
    path = tmp_path / "events.parquet"
    pd.DataFrame(flat_rows(1)).to_parquet(path)
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        ingest(spec, [path], key=b"too-short")


def test_the_first_write_removes_old_temporary_files_and_syncs_new_folders(
    spec, home, tmp_path, monkeypatch
):
    folder = store(home).root / "events" / "date=2026-01-01"
    folder.mkdir(parents=True)
    old, recent = folder / ".part-a.parquet.1.tmp", folder / ".part-b.parquet.2.tmp"
    for leftover in (old, recent):
        leftover.write_bytes(b"half a file")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    synced: list[Path] = []
    monkeypatch.setattr("orchestrator.adapters.telemetry_store._fsync_folder", synced.append)
    path = tmp_path / "events.parquet"
    pd.DataFrame(flat_rows(2)).to_parquet(path)
    ingest(spec, [path])
    assert not old.exists() and recent.exists()
    day = store(home).root / "events" / "date=2026-01-02"
    assert day.parent in synced  # the new date= folder's entry in its parent
    assert day in synced  # the renamed files' entries in the folder
