"""The prediction-event contract: validation rules, redaction, keys and SLA statistics."""

import datetime as dt
import hashlib
import hmac
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from orchestrator.core.errors import ConfigError, DataError
from orchestrator.core.gates import GateVerdict
from orchestrator.core.spec import SLAPolicy, Threshold
from orchestrator.core.telemetry import (
    DEMO_KEY,
    HIDDEN_NAME,
    SCHEMA_VERSION,
    ContractError,
    EventSchema,
    Problem,
    Redactor,
    check_key,
    evaluate_sla,
    resolve_key,
    sla_breaches,
    sla_statistics,
    table_from_records,
    validate_batch,
    validate_event,
)
from tests.conftest import small_spec

KEY = b"test-key-0123456789abcdef"
SECRET = "SECRET-VALUE-7731"


@pytest.fixture(scope="module")
def schema() -> EventSchema:
    spec = small_spec(telemetry={"enabled": True, "identifiers": ["account_id"], "pii": ["email"]})
    return EventSchema.from_spec(spec)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(KEY)


def event(**changes) -> dict:
    base = {
        "request_id": "r-1",
        "model_version": "3",
        "timestamp": "2026-01-02T10:00:00Z",
        "latency_ms": 12.5,
        "status": "ok",
        "subject_id": "user-1",
        "account_id": "acct-1",
        "email": "jane@example.org",
        "features": {"x1": 1.0, "x2": 2, "x3": None, "color": "red", "shop": "s1"},
        "prediction": 1,
        "score": 0.8,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _MISSING}


_MISSING = object()


def hmac_hex(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def test_stored_columns_follow_the_contract_order_and_types(schema):
    arrow = schema.arrow_schema
    assert arrow.names == [
        "schema_version",
        "model_name",
        "model_version",
        "environment",
        "timestamp",
        "request_id",
        "trace_id",
        "latency_ms",
        "status",
        "fallback",
        "subject_hash",
        "account_id_hash",
        "segment.shop",
        "feature.x1",
        "feature.x2",
        "feature.x3",
        "feature.color",
        "feature.shop",
        "prediction",
        "score",
    ]
    assert arrow.field("schema_version").type == pa.int16()
    assert arrow.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert arrow.field("feature.x1").type == pa.float64()
    assert arrow.field("feature.color").type == pa.string()
    assert not arrow.field("request_id").nullable and arrow.field("trace_id").nullable
    assert schema.rejected_schema.names[:3] == ["row", "field", "reason"]
    assert "email" not in schema.rejected_schema.names
    assert schema.rejected_schema.names[3:] == arrow.names


def test_a_valid_event_is_stored_redacted_with_defaults_filled(schema, redactor):
    row = validate_event(event(), schema, redactor)
    assert row["schema_version"] == SCHEMA_VERSION
    assert row["model_name"] == "toy" and row["environment"] == "production"
    assert row["timestamp"] == dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)
    assert row["fallback"] == "none"
    assert row["subject_hash"] == hmac_hex(KEY, "user-1")
    assert row["account_id_hash"] == hmac_hex(KEY, "acct-1")
    assert row["feature.x2"] == 2.0 and row["feature.x3"] is None
    assert row["segment.shop"] == "s1"  # taken from the feature of the same name
    assert "email" not in row and "subject_id" not in row and "account_id" not in row


RULES = [
    ({"model_version": _MISSING}, "model_version", "is required"),
    ({"model_version": ""}, "model_version", "must not be empty"),
    ({"request_id": _MISSING}, "request_id", "is required"),
    ({"request_id": "   "}, "request_id", "must not be empty"),
    ({"request_id": {"nested": SECRET}}, "request_id", "must be a string"),
    ({"timestamp": _MISSING}, "timestamp", "is required"),
    ({"timestamp": "2026-01-02T10:00:00"}, "timestamp", "has no time zone"),
    ({"timestamp": dt.datetime(2026, 1, 2, 10)}, "timestamp", "has no time zone"),
    ({"timestamp": SECRET}, "timestamp", "must be a timestamp with a time zone"),
    ({"timestamp": 1.767e12}, "timestamp", "must be a timestamp with a time zone"),  # ms
    ({"latency_ms": _MISSING}, "latency_ms", "is required"),
    ({"latency_ms": -0.5}, "latency_ms", "must be a finite number >= 0"),
    ({"latency_ms": float("inf")}, "latency_ms", "must be a finite number >= 0"),
    ({"latency_ms": SECRET}, "latency_ms", "must be a finite number >= 0"),
    ({"status": _MISSING}, "status", "is required"),
    ({"status": SECRET}, "status", "must be one of ok, error, timeout"),
    ({"model_name": SECRET}, "model_name", "must be 'toy'"),
    ({"schema_version": 2}, "schema_version", "must be 1"),
    ({"score": 1.5}, "score", "must be within [0, 1] for binary_classification"),
    ({"score": -0.1}, "score", "must be within [0, 1] for binary_classification"),
    ({"score": SECRET}, "score", "must be a number"),
    ({"prediction": 0.7}, "prediction", "must be 0 or 1"),
    ({"prediction": SECRET}, "prediction", "must be a number"),
    ({"features": {"x1": SECRET}}, "feature.x1", "must be a number"),
    ({"feature.x2": SECRET}, "feature.x2", "must be a number"),
    ({"features": {"color": {"a": SECRET}}}, "feature.color", "must be a string"),
    ({"features": {"x9": SECRET}}, "feature.x9", "is not a field of the prediction-event"),
    ({"segments": {"city": SECRET}}, "segment.city", "is not a field of the prediction-event"),
    ({"features": [SECRET]}, "features", "must be an object"),
    ({"phone": SECRET}, "phone", "is not a field of the prediction-event contract"),
    ({"subject_hash": SECRET}, "subject_hash", "is computed by driftgate"),
    ({"account_id_hash": SECRET}, "account_id_hash", "is computed by driftgate"),
    ({"subject_id": [SECRET]}, "subject_id", "must be a string or an integer"),
    ({"features": {"x1": float("inf")}}, "feature.x1", "must be a finite number"),
    ({"features": {"x2": "-inf"}}, "feature.x2", "must be a finite number"),
    ({"latency_ms": True}, "latency_ms", "must be a finite number >= 0"),
    ({"score": True}, "score", "must be a number"),
    ({"prediction": False}, "prediction", "must be a number"),
    ({"request_id": True}, "request_id", "must be a string"),
    ({"timestamp": 0}, "timestamp", "must fall between 2000-01-01 and one day after now"),
    ({"timestamp": "1999-12-31T23:59:59Z"}, "timestamp", "the plausible-time rule"),
    ({"timestamp": "2999-01-01T00:00:00Z"}, "timestamp", "the plausible-time rule"),
    ({"features": {"x1": 1.0, SECRET: 1}}, HIDDEN_NAME, "is not a field of the prediction"),
    ({f"{SECRET}@example.org": 1}, HIDDEN_NAME, "is not a field of the prediction-event"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), RULES)
def test_each_rule_names_the_field_and_never_the_value(schema, redactor, changes, field, reason):
    with pytest.raises(ContractError) as caught:
        validate_event(event(**changes), schema, redactor)
    problems = caught.value.problems
    assert [p.field for p in problems] == [field]
    assert problems[0].row is None and reason in problems[0].reason
    assert f"field {field}: " in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("changes", "field", "reason"), RULES)
def test_each_rule_rejects_the_row_in_a_batch(schema, redactor, changes, field, reason):
    frame = pd.DataFrame([event(request_id="ok-0"), event(**changes), event(request_id="ok-2")])
    result = validate_batch(frame, schema, redactor, first_row=40)
    assert result.valid.column("request_id").to_pylist() == ["ok-0", "ok-2"]
    rejected = result.rejected.to_pylist()
    assert [(r["row"], r["field"]) for r in rejected] == [(41, field)]
    assert reason in rejected[0]["reason"] and SECRET not in rejected[0]["reason"]
    assert rejected[0]["reason"].startswith(f"{field} ")  # always named first
    if field in ("phone", "feature.x9", "segment.city", "features", "subject_hash"):
        assert SECRET.encode() not in _table_bytes(result.rejected)


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_a_nan_latency_is_not_a_latency(schema, redactor):
    with pytest.raises(ContractError, match="field latency_ms: must be a finite number >= 0"):
        validate_event(event(latency_ms=float("nan")), schema, redactor)
    # In a DataFrame NaN is pandas' missing value: the latency is missing.
    frame = pd.DataFrame([event(latency_ms=float("nan"))])
    rejected = validate_batch(frame, schema, redactor).rejected
    assert rejected.column("reason").to_pylist() == ["latency_ms is required"]


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-01-02T10:00:00Z", dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)),
        ("2026-01-02T15:30:00.250+05:30", dt.datetime(2026, 1, 2, 10, 0, 0, 250000, dt.UTC)),
        ("2026-01-02 10:00:00+0000", dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)),
        (1767348000.5, dt.datetime(2026, 1, 2, 10, 0, 0, 500000, dt.UTC)),
        (
            dt.datetime(2026, 1, 2, 5, tzinfo=ZoneInfo("America/New_York")),
            dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC),
        ),
    ],
)
def test_time_zone_aware_timestamps_are_stored_in_utc(schema, redactor, timestamp, expected):
    assert validate_event(event(timestamp=timestamp), schema, redactor)["timestamp"] == expected


def test_string_timestamps_of_mixed_shapes_in_one_column(schema, redactor):
    frame = pd.DataFrame(
        [
            event(request_id="a", timestamp="2026-01-02T10:00:00Z"),
            event(request_id="b", timestamp="1767348000"),
            event(request_id="c", timestamp="2026-01-02T10:00:00"),
            event(request_id="d", timestamp="2026-01-02T12:00:00+02:00"),
        ]
    )
    result = validate_batch(frame, schema, redactor)
    utc = dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)
    assert result.valid.column("timestamp").to_pylist() == [utc, utc, utc]
    assert result.rejected.column("reason").to_pylist() == [
        "timestamp has no time zone (send UTC, an offset or Z)"
    ]


def test_naive_pandas_timestamps_are_rejected(schema, redactor):
    frame = pd.DataFrame([event(request_id="a"), event(request_id="b")])
    frame["timestamp"] = pd.to_datetime(["2026-01-02 10:00", "2026-01-02 11:00"])
    result = validate_batch(frame, schema, redactor)
    assert result.valid.num_rows == 0
    assert set(result.rejected.column("field").to_pylist()) == {"timestamp"}
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("UTC")
    assert validate_batch(frame, schema, redactor).valid.num_rows == 2


def test_a_malformed_batch_reports_every_problem_with_its_row(schema, redactor):
    rows = [
        event(request_id="a"),
        event(request_id="b", latency_ms=-1),
        event(request_id="c"),
        event(request_id="d", status="done", score=2.0, phone="555"),
        event(request_id="e", model_version=None, timestamp="2026-01-02"),
        event(request_id="f"),
    ]
    result = validate_batch(pd.DataFrame(rows), schema, redactor, first_row=1000)
    assert result.valid.column("request_id").to_pylist() == ["a", "c", "f"]
    assert result.valid.schema == schema.arrow_schema
    assert result.rejected.schema == schema.rejected_schema
    rejected = {r["row"]: r for r in result.rejected.to_pylist()}
    assert sorted(rejected) == [1001, 1003, 1004]
    assert rejected[1001]["field"] == "latency_ms"
    assert rejected[1003]["field"] == "status"
    assert rejected[1003]["reason"] == (
        "status must be one of ok, error, timeout; "
        "score must be within [0, 1] for binary_classification; "
        "phone is not a field of the prediction-event contract (unknown fields are never stored)"
    )
    assert rejected[1004]["field"] == "model_version"
    assert "model_version is required" in rejected[1004]["reason"]
    assert "timestamp has no time zone" in rejected[1004]["reason"]
    # Safe stored columns are kept for inspection; identifiers only as hashes.
    assert rejected[1003]["request_id"] == "d"
    assert rejected[1003]["subject_hash"] == hmac_hex(KEY, "user-1")


def test_duplicate_request_ids_keep_the_last_valid_one(schema, redactor):
    rows = [
        event(request_id="x", latency_ms=1.0),
        event(request_id="y"),
        event(request_id="x", latency_ms=2.0),
        event(request_id="x", latency_ms=3.0),
        event(request_id="y", status="nope"),  # invalid: the earlier y stays
    ]
    result = validate_batch(pd.DataFrame(rows), schema, redactor)
    kept = result.valid.select(["request_id", "latency_ms"]).to_pylist()
    assert kept == [{"request_id": "y", "latency_ms": 12.5}, {"request_id": "x", "latency_ms": 3.0}]
    rejected = result.rejected.select(["row", "field", "reason"]).to_pylist()
    duplicate = "request_id is repeated later in the batch; the last one is kept"
    assert rejected == [
        {"row": 0, "field": "request_id", "reason": duplicate},
        {"row": 2, "field": "request_id", "reason": duplicate},
        {"row": 4, "field": "status", "reason": "status must be one of ok, error, timeout"},
    ]


def test_flat_nested_and_arrow_struct_inputs_store_the_same_rows(schema, redactor):
    nested = event()
    flat = {k: v for k, v in event().items() if k != "features"}
    flat.update({f"feature.{k}": v for k, v in nested["features"].items()})
    flat["segment.shop"] = "s1"
    struct = pa.Table.from_pylist([nested])
    assert pa.types.is_struct(struct.schema.field("features").type)
    stored = [
        validate_batch(data, schema, redactor).valid
        for data in (pd.DataFrame([nested]), pd.DataFrame([flat]), struct)
    ]
    assert stored[0].equals(stored[1]) and stored[0].equals(stored[2])


def test_map_typed_features_are_read_like_objects(schema, redactor):
    frame = pd.DataFrame([event(request_id="a"), event(request_id="b")]).drop(columns="features")
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "features",
        pa.array(
            [[("x1", "1.5"), ("color", "blue")], [("x9", SECRET)]],
            pa.map_(pa.string(), pa.string()),
        ),
    )
    result = validate_batch(table, schema, redactor)
    assert result.valid.select(["feature.x1", "feature.color"]).to_pylist() == [
        {"feature.x1": 1.5, "feature.color": "blue"}
    ]
    assert result.rejected.select(["row", "field"]).to_pylist() == [
        {"row": 1, "field": "feature.x9"}
    ]


def test_an_entirely_null_unknown_column_is_ignored(schema, redactor):
    frame = pd.DataFrame([event(request_id="a"), event(request_id="b")])
    frame["legacy_field"] = None
    assert validate_batch(frame, schema, redactor).valid.num_rows == 2
    frame.loc[1, "legacy_field"] = SECRET
    result = validate_batch(frame, schema, redactor)
    assert result.rejected.column("row").to_pylist() == [1]
    assert SECRET.encode() not in _table_bytes(result.rejected)


def test_segments_come_from_features_and_unknown_segment_values_are_kept(schema, redactor):
    rows = [
        event(request_id="a"),
        event(request_id="b", segments={"shop": "s9"}),
        event(request_id="c", features={"x1": 1.0, "shop": None}),
    ]
    result = validate_batch(pd.DataFrame(rows), schema, redactor)
    assert result.valid.column("segment.shop").to_pylist() == ["s1", "s9", None]
    assert result.valid.column("feature.shop").to_pylist() == ["s1", "s1", None]


def test_regression_scores_are_not_bounded_but_must_be_finite(redactor):
    spec = small_spec(
        telemetry={"enabled": True, "identifiers": ["account_id"], "pii": ["email"]},
        performance={"task": "regression"},
    )
    schema = EventSchema.from_spec(spec)
    row = validate_event(event(prediction=42.5, score=17.0), schema, redactor)
    assert (row["prediction"], row["score"]) == (42.5, 17.0)
    with pytest.raises(ContractError, match="field score: must be a finite number"):
        validate_event(event(score=float("inf")), schema, redactor)


def test_numeric_strings_are_read_as_numbers(schema, redactor):
    frame = pd.DataFrame([event(request_id="a"), event(request_id="b")]).astype(str)
    frame["features"] = [event()["features"]] * 2
    frame["score"] = ["0.25", "1"]
    frame["model_version"] = ["3", "3"]
    result = validate_batch(frame, schema, redactor)
    assert result.rejected.num_rows == 0
    assert result.valid.column("score").to_pylist() == [0.25, 1.0]
    assert result.valid.column("latency_ms").to_pylist() == [12.5, 12.5]


def test_validate_batch_refuses_what_is_not_a_table(schema, redactor):
    with pytest.raises(DataError, match="Arrow table or a DataFrame"):
        validate_batch([event()], schema, redactor)


def test_problems_read_as_row_and_field():
    assert str(Problem(3, "latency_ms", "must be a finite number >= 0")) == (
        "row 3, field latency_ms: must be a finite number >= 0"
    )
    error = ContractError([Problem(3, "latency_ms", "must be a finite number >= 0")])
    assert isinstance(error, DataError)
    assert "row 3, field latency_ms: must be a finite number >= 0" in str(error)


# --- redaction and keys ----------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, b"k" * 100])  # longer than a SHA-256 block: hashed first
def test_hashes_are_hmac_sha256_hex_and_nulls_stay_null(key):
    values = pa.array(["user-1", None, "user-2", "user-1", "émile"])
    hashed = Redactor(key).hash_array(values).to_pylist()
    assert hashed == [
        hmac_hex(key, "user-1"),
        None,
        hmac_hex(key, "user-2"),
        hmac_hex(key, "user-1"),
        hmac_hex(key, "émile"),
    ]
    chunked = pa.chunked_array([values.slice(0, 2), values.slice(2)])
    assert Redactor(key).hash_array(chunked).to_pylist() == hashed


def test_identifiers_hash_deterministically_per_key_and_pii_is_dropped(schema):
    frame = pd.DataFrame([event(request_id="a"), event(request_id="b", subject_id=12345)])
    first = validate_batch(frame, schema, Redactor(KEY)).valid
    again = validate_batch(frame, schema, Redactor(KEY)).valid
    other = validate_batch(frame, schema, Redactor(b"another-key-0123456789")).valid
    assert first.column("subject_hash").equals(again.column("subject_hash"))
    assert first.column("subject_hash").to_pylist()[1] == hmac_hex(KEY, "12345")
    assert set(first.column("subject_hash").to_pylist()).isdisjoint(
        other.column("subject_hash").to_pylist()
    )
    assert (
        first.column("account_id_hash").to_pylist() != other.column("account_id_hash").to_pylist()
    )
    data = _table_bytes(first)
    for raw in (b"jane@example.org", b"user-1", b"acct-1", b"12345"):
        assert raw not in data


def test_one_value_hashes_as_in_an_array_and_keys_given_directly_are_checked():
    redactor = Redactor(KEY)
    assert redactor.hash_value("user-1") == redactor.hash_array(pa.array(["user-1"]))[0].as_py()
    assert check_key(KEY) == KEY
    for short in (b"short", "a-str-not-bytes-but-long", b""):
        with pytest.raises(ConfigError, match="at least 16 bytes") as caught:
            check_key(short)
        assert "short" not in str(caught.value)


def test_the_redactor_does_not_show_its_key():
    assert "test-key" not in repr(Redactor(KEY))
    assert not any(KEY in bytes(str(v), "utf-8") for v in vars(Redactor(KEY)).values())


def test_resolve_key_reads_the_variable_when_called(monkeypatch):
    monkeypatch.setenv("DG_TEST_KEY", "a-long-enough-secret-value")
    assert resolve_key("DG_TEST_KEY") == b"a-long-enough-secret-value"
    monkeypatch.delenv("DG_TEST_KEY")
    with pytest.raises(ConfigError, match=r"\$DG_TEST_KEY is not set"):
        resolve_key("DG_TEST_KEY")
    assert resolve_key("DG_TEST_KEY", demo=True) == DEMO_KEY
    monkeypatch.setenv("DG_TEST_KEY", "short-secret")
    for demo in (False, True):  # a key that is set is never silently replaced
        with pytest.raises(ConfigError, match=r"\$DG_TEST_KEY is shorter than 16") as caught:
            resolve_key("DG_TEST_KEY", demo=demo)
        assert "short-secret" not in str(caught.value)


# --- SLA statistics and gate -----------------------------------------------------------------


def sla_events() -> pd.DataFrame:
    latencies = [10.0, 20.0, 30.0, 40.0, 400.0, 5.0, 6.0, 7.0]
    return pd.DataFrame(
        {
            "model_version": ["1"] * 5 + ["2"] * 3,
            "latency_ms": latencies,
            "status": ["ok", "error", "ok", "timeout", "ok", "ok", "ok", "error"],
            "fallback": ["none", "cache", "none", "none", "none", "none", "rules", "none"],
            "segment.shop": ["a", "a", "b", None, "b", "a", "a", "a"],
        }
    )


def test_sla_statistics_per_version_and_segment_value():
    stats = sla_statistics(sla_events(), ["shop"])
    assert list(stats[["model_version", "segment"]].itertuples(index=False, name=None)) == [
        ("1", "all"),
        ("1", "shop=a"),
        ("1", "shop=b"),
        ("1", "shop=(null)"),
        ("2", "all"),
        ("2", "shop=a"),
    ]
    first = stats.iloc[0]
    assert first["events"] == 5
    assert first["error_rate"] == pytest.approx(0.2)
    assert first["timeout_rate"] == pytest.approx(0.2)
    assert first["fallback_rate"] == pytest.approx(0.2)
    latencies = [10.0, 20.0, 30.0, 40.0, 400.0]
    for name, q in (("latency_p50_ms", 50), ("latency_p95_ms", 95), ("latency_p99_ms", 99)):
        assert first[name] == pytest.approx(np.percentile(latencies, q))
    assert first["latency_p95_ms"] == pytest.approx(328.0)  # 40 + 0.8 * 360, by hand
    shop_b = stats.iloc[2]
    assert (shop_b["events"], shop_b["latency_p50_ms"], shop_b["error_rate"]) == (2, 215.0, 0.0)
    version_two = stats.iloc[4]
    assert version_two["error_rate"] == pytest.approx(1 / 3)
    assert version_two["fallback_rate"] == pytest.approx(1 / 3)
    assert sla_statistics(sla_events().iloc[:0], ["shop"]).empty


def stats_frame(rows: list[tuple]) -> pd.DataFrame:
    columns = ["model_version", "segment", "events", "error_rate", "timeout_rate"]
    columns += ["fallback_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
    return pd.DataFrame(rows, columns=columns)


POLICY = SLAPolicy(
    limits={
        "latency_p95_ms": Threshold(warn=200.0, error=300.0),
        "error_rate": Threshold(warn=0.01, error=0.05),
    },
    min_events=100,
)


def test_sla_passes_when_every_judged_group_is_within_warn():
    stats = stats_frame([("2", "all", 1000, 0.001, 0, 0, 50, 150.0, 180.0)])
    result = evaluate_sla(stats, POLICY)
    assert result.verdict is GateVerdict.PASS and result.gate == "sla"
    assert result.metrics["worst_metric"] == "latency_p95_ms"
    assert result.metrics["breaches"] == 0 and result.metrics["events"] == 1000
    assert result.threshold == {"warn": 200.0, "error": 300.0}


def test_sla_warns_above_warn_and_blocks_above_error():
    warn = stats_frame([("2", "all", 1000, 0.02, 0, 0, 50, 150.0, 180.0)])
    result = evaluate_sla(warn, POLICY)
    assert result.verdict is GateVerdict.WARN
    assert result.reason == "error_rate 0.02 > warn limit 0.01 in v2 (all)"
    block = stats_frame(
        [
            ("2", "all", 1000, 0.02, 0, 0, 50, 412.0, 500.0),
            ("3", "all", 1000, 0.0, 0, 0, 50, 100.0, 150.0),
            ("3", "region=eu", 400, 0.09, 0, 0, 50, 100.0, 150.0),
        ]
    )
    result = evaluate_sla(block, POLICY)
    assert result.verdict is GateVerdict.BLOCK and result.blocks
    assert result.reason.startswith("error_rate 0.09 > error limit 0.05 in v3 (region=eu)")
    assert result.reason.endswith("(and 2 more breaches)")
    assert result.metrics["worst_group"] == "v3 region=eu"
    assert result.metrics["worst_value"] == 0.09 and result.metrics["breaches"] == 3
    assert result.metrics["events"] == 2000
    assert result.threshold == {"warn": 0.01, "error": 0.05}


def test_sla_equal_to_the_limit_is_not_a_breach():
    stats = stats_frame([("2", "all", 1000, 0.05, 0, 0, 50, 300.0, 300.0)])
    assert evaluate_sla(stats, POLICY).verdict is GateVerdict.WARN  # > warn, == error


def test_sla_reports_but_does_not_judge_groups_under_min_events():
    stats = stats_frame(
        [
            ("2", "all", 1000, 0.0, 0, 0, 50, 100.0, 150.0),
            ("2", "region=eu", 99, 0.5, 0, 0, 50, 9000.0, 9000.0),
        ]
    )
    result = evaluate_sla(stats, POLICY)
    assert result.verdict is GateVerdict.PASS
    assert result.metrics["unjudged_groups"] == 1
    table = sla_breaches(stats, POLICY)
    assert len(table) == 4
    unjudged = table[table["segment"] == "region=eu"]
    assert set(unjudged["verdict"]) == {"not judged"}
    assert list(table.columns) == [
        "model_version",
        "segment",
        "metric",
        "value",
        "warn",
        "error",
        "events",
        "verdict",
    ]


def test_sla_blocks_without_evidence():
    none = evaluate_sla(stats_frame([]), POLICY)
    assert none.verdict is GateVerdict.BLOCK and "no prediction events" in none.reason
    few = evaluate_sla(stats_frame([("2", "all", 20, 0.0, 0, 0, 5, 6.0, 7.0)]), POLICY)
    assert few.verdict is GateVerdict.BLOCK
    assert "no model version or segment has 100 events" in few.reason


def test_sla_gate_on_statistics_computed_from_events():
    stats = sla_statistics(sla_events(), ["shop"])
    result = evaluate_sla(stats, SLAPolicy(min_events=5))
    # Only v1 (all) has 5 events: errors 0.2 > 0.05, p95 328 > 200 warn (not 500 error).
    assert result.verdict is GateVerdict.BLOCK
    assert result.reason.startswith("error_rate 0.2 > error limit 0.05 in v1 (all)")
    assert result.metrics["judged_groups"] == 1


# --- reading values as clients send them -----------------------------------------------------


def test_model_versions_are_trimmed_and_blank_identifiers_are_null(schema, redactor):
    row = validate_event(
        event(model_version=" 3 ", subject_id="", account_id="  "), schema, redactor
    )
    assert row["model_version"] == "3"
    assert row["subject_hash"] is None and row["account_id_hash"] is None


@pytest.mark.parametrize("big", [2**53 + 1, 2**63 + 5, 2**70])
def test_integer_identifiers_hash_their_exact_digits(schema, redactor, big):
    # Alone, and in a batch where other events carry floats or text: never through a float.
    alone = validate_event(event(subject_id=big), schema, redactor)["subject_hash"]
    records = [
        event(request_id="a", subject_id=big),
        event(request_id="b", subject_id=1.5),
        event(request_id="c", subject_id="user-9"),
    ]
    mixed = validate_batch(table_from_records(records), schema, redactor).valid
    assert alone == mixed.column("subject_hash")[0].as_py() == hmac_hex(KEY, str(big))


def test_each_timestamp_is_judged_alone_whatever_else_its_batch_holds(schema, redactor):
    aware = dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)
    naive = dt.datetime(2026, 1, 2, 10)
    new_york = dt.datetime(2026, 1, 2, 5, tzinfo=ZoneInfo("America/New_York"))
    for stamps in (
        [naive, aware, new_york],
        [aware, naive, new_york],
        [1767348000.0, new_york, naive],
        [pd.Timestamp(aware), np.datetime64("2026-01-02T10:00"), "2026-01-02T10:00:00Z"],
    ):
        records = [event(request_id=f"r{i}", timestamp=t) for i, t in enumerate(stamps)]
        result = validate_batch(table_from_records(records), schema, redactor)
        naive_rows = [i for i, t in enumerate(stamps) if isinstance(t, np.datetime64) or t is naive]
        assert result.rejected.column("row").to_pylist() == naive_rows
        assert set(result.rejected.column("reason").to_pylist()) == {
            "timestamp has no time zone (send UTC, an offset or Z)"
        }
        assert set(result.valid.column("timestamp").to_pylist()) == {aware}


def test_numpy_scalars_read_as_the_values_they_hold(schema, redactor):
    row = validate_event(
        event(
            latency_ms=np.float32(12.5),
            score=np.float64(0.25),
            prediction=np.int8(1),
            subject_id=np.int64(12345),
            account_id=np.str_("acct-1"),
            features={"x1": np.int16(3), "color": np.str_("red"), "shop": "s1"},
        ),
        schema,
        redactor,
    )
    assert (row["latency_ms"], row["score"], row["prediction"]) == (12.5, 0.25, 1.0)
    assert row["subject_hash"] == hmac_hex(KEY, "12345")
    assert row["account_id_hash"] == hmac_hex(KEY, "acct-1")
    assert (row["feature.x1"], row["feature.color"]) == (3.0, "red")


HOSTILE = [
    np.datetime64("2026-01-01"),
    np.float32(1),
    np.timedelta64(5, "ns"),
    np.complex64(1 + 2j),
    np.bytes_(SECRET.encode()),
    dt.timedelta(seconds=1),
    uuid.uuid4(),
    Decimal("1.5"),
    SECRET.encode(),
    {"a": {"b": SECRET}},
    [SECRET],
    2**70,
    10**5000,  # more digits than Python turns into text
    float("nan"),
    float("-inf"),
    dt.date(2026, 1, 2),
    "\\ud800",  # a lone surrogate, as JSON allows
    object(),
]


def test_no_mix_of_client_values_reaches_arrow_inference():
    # pyarrow's own inference segfaults on some of these mixes (np.datetime64 with
    # np.float32): a child process, so that a crash fails this test, not the run.
    code = textwrap.dedent(
        """
        import itertools, sys
        sys.path.insert(0, ".")
        from tests.core.test_telemetry import HOSTILE
        from orchestrator.core.telemetry import column_from_values
        for a, b in itertools.product(HOSTILE, repeat=2):
            for timestamps in (False, True):
                column_from_values([a, b, None, 1, "x"][:2], timestamps=timestamps)
                column_from_values([a, b, None, 1, "x"], timestamps=timestamps)
        """
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-2000:]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
def test_a_value_no_field_takes_rejects_only_its_own_event(schema, redactor, value):
    records = [event(request_id="ok-0"), event(request_id="bad", features={"x1": value})]
    records += [event(request_id="ok-2", latency_ms=value)]
    result = validate_batch(table_from_records(records), schema, redactor)
    assert result.valid.num_rows + result.rejected.num_rows == 3
    assert "ok-0" in result.valid.column("request_id").to_pylist()
    assert SECRET.encode() not in _table_bytes(result.rejected)


def test_a_repeated_column_rejects_rows_where_both_copies_hold_a_value(schema, redactor):
    base = pd.DataFrame([event(request_id=f"r{i}") for i in range(3)]).drop(columns=["score"])
    table = pa.Table.from_pandas(base, preserve_index=False)
    table = table.append_column("score", pa.array([0.25, None, 0.5]))
    table = table.append_column("score", pa.array([None, 0.75, 0.5]))
    # Personal data twice: dropped as ever, not a reason to refuse the rows.
    table = table.append_column("email", pa.array([SECRET] * 3))
    result = validate_batch(table, schema, redactor)
    assert result.valid.select(["request_id", "score"]).to_pylist() == [
        {"request_id": "r0", "score": 0.25},
        {"request_id": "r1", "score": 0.75},
    ]
    assert result.rejected.select(["row", "field", "reason"]).to_pylist() == [
        {
            "row": 2,
            "field": "score",
            "reason": "score is given more than once (a repeated column); send each field once",
        }
    ]


def test_a_field_name_that_is_no_identifier_is_never_shown(schema, redactor):
    email = "jane.doe@example.org"
    frame = pd.DataFrame([event(features={"x1": 1.0, email: 2.0}), event(request_id="b")])
    frame[email] = [None, "x"]
    result = validate_batch(frame, schema, redactor)
    rejected = result.rejected.select(["row", "field", "reason"]).to_pylist()
    assert [r["field"] for r in rejected] == [HIDDEN_NAME, HIDDEN_NAME]
    assert email.encode() not in _table_bytes(result.rejected)
    with pytest.raises(ContractError) as caught:
        validate_event(event(**{email: 1}), schema, redactor)
    assert email not in str(caught.value) and HIDDEN_NAME in str(caught.value)
