"""Telemetry in process: prediction events, SLAs, delayed labels, realized and estimated quality,
and the sensors that act on them, on a real test instance (MLflow replaced by the fake).

The toy's champion is a real scikit-learn pipeline trained on days 1..5; from day 6 on, the
serving side logs one event per prediction through PredictionLogger, and labels arrive in
arrival partitions days later.
"""

import functools
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.pipeline import Pipeline

from orchestrator.adapters.partition_store import write_parquet_atomically
from orchestrator.bootstrap import QUIET_LOGS
from orchestrator.components import build_model_definitions
from orchestrator.core.audit import AuditAction
from orchestrator.core.labels import NOT_BINARY, UNKNOWN_REQUEST_ID
from orchestrator.core.registry import CHAMPION
from orchestrator.core.training import score_model, split_holdout, train_candidate
from orchestrator.evidence import TRIGGER_TAG, check_in_run
from orchestrator.governance import Governance
from orchestrator.prediction_logger import PredictionLogger
from orchestrator.resources import AuditResource, DriftgateHomeResource
from tests.conftest import register_version, small_spec
from tests.wiring.conftest import day, toy_day

KEY = b"x" * 32
EMAIL_DOMAIN = "@mail.example.org"
SUBJECT = "subject-7b1e-"  # every raw subject id starts so: none may reach the disk
PASSING = {"gate.training_data_contract": "pass", "gate.evaluation": "pass"}
TELEMETRY = {"enabled": True, "pii": ["email"]}
# 1250 holdout rows (a quarter of days 1..5) in 5 chunks of 250: a 1000-row day is judged
# on bounds learned from chunks a quarter its size; 300 labelled rows are needed to judge.
PERFORMANCE = {
    "reference_chunks": 5,
    "min_labelled_rows": 300,
    "min_segment_rows": 200,
    "label_lookback_days": 3,
}
SAFE_MODE = {
    "enabled": True,
    "check": "toy/realized_performance:realized_performance_within_thresholds",
}


# -- a telemetry-enabled toy with a real champion ---------------------------------------------


def with_telemetry(toy, **overrides):
    """The toy, monitored in production: telemetry on, v1 trained, approved, promoted and
    scored as the performance reference."""
    toy.spec = small_spec(telemetry=TELEMETRY, performance=PERFORMANCE, **overrides)
    toy.defs = dg.Definitions.merge(
        build_model_definitions(toy.spec), dg.Definitions(resources=toy.defs.resources)
    )
    toy.store = DriftgateHomeResource(home=str(toy.home)).store(toy.spec)
    crown(toy, train(toy))
    return toy


@pytest.fixture
def watched(toy):
    return with_telemetry(toy)


def reference_rows() -> pd.DataFrame:
    days = [toy_day(n) for n in range(1, 6)]
    return pd.concat([f.merge(t, on="request_id") for f, t in days], ignore_index=True)


@functools.cache
def pipeline(every: int) -> Pipeline:
    """A real scikit-learn pipeline trained on every `every`-th of the older rows of days 1..5
    (the newest quarter is the holdout it is scored on); deterministic, so trained once."""
    spec = small_spec()
    rows, _ = split_holdout(reference_rows(), spec, spec.retrain.holdout_fraction)
    return train_candidate(rows.iloc[::every], spec)


def train(toy, every: int = 1) -> str:
    """Register a trained pipeline as the retraining job would, and have alice approve it."""
    tags = {
        **PASSING,
        "training_partitions": ",".join(day(n) for n in range(1, 6)),
        "trigger": "drift",
        "triggered_by": "sensor:retrain_toy_on_drift",
    }
    audit = AuditResource(home=str(toy.home)).log()
    version = register_version(toy.registry.fake, audit, "toy", tags, pipeline(every))
    Governance(toy.spec, toy.registry.fake, audit).approve(version, "alice", "holdout reviewed")
    return version


def crown(toy, version: str) -> None:
    """Promote through Governance, then score the new champion as its performance reference
    (as the promote job does)."""
    audit = AuditResource(home=str(toy.home)).log()
    Governance(toy.spec, toy.registry.fake, audit).promote(version, "alice", None)
    result = dg.materialize(
        [toy.defs.resolve_assets_def(toy.names.performance_reference)],  # resources bound
        instance=toy.instance,
        run_config=QUIET_LOGS,
    )
    assert result.success
    assert materialization(result, toy.names.performance_reference)["version"] == version


# -- serving, labels, runs and ticks ----------------------------------------------------------


def serve(toy, n: int, *, latency: np.ndarray | None = None, errors: int = 0) -> np.ndarray:
    """The champion answers day n's requests (the first `errors` fail) and the serving process
    logs each; returns the scores."""
    version = toy.registry.fake.get_alias("toy", CHAMPION).version
    features, _ = toy_day(n)
    scores = score_model(toy.registry.fake.load_model("toy", version), features, toy.spec)
    if latency is None:
        latency = np.random.default_rng(100 + n).gamma(2.0, 20.0, len(features))  # p95 ~95 ms
    with PredictionLogger(toy.spec, home=toy.home, key=KEY) as logger:
        for i, row in enumerate(features.itertuples(index=False)):
            failed = i < errors
            logger.log(
                row.request_id,
                model_version=version,
                latency_ms=float(latency[i]),
                status="error" if failed else "ok",
                score=None if failed else float(scores[i]),
                features={f: getattr(row, f) for f in toy.spec.feature_names},
                subject_id=f"{SUBJECT}{n}-{i}",
                timestamp=row.timestamp.isoformat(),
                email=f"customer.{n}.{i}{EMAIL_DOMAIN}",
            )
    assert logger.stats.written == len(features)
    return scores


def arrive(toy, n: int, labels: pd.DataFrame) -> None:
    """The label file that arrives on day n (for predictions of that day or up to
    label_lookback_days earlier)."""
    write_parquet_atomically(labels, toy.store.source_path("labels", day(n)))


def truth(n: int, flipped: bool = False) -> pd.DataFrame:
    _, labels = toy_day(n)
    return labels.assign(label=1 - labels["label"]) if flipped else labels


def run(toy, job: str, n: int, **kwargs) -> dg.ExecuteInProcessResult:
    result = toy.defs.resolve_job_def(job).execute_in_process(
        instance=toy.instance,
        partition_key=day(n),
        run_config=QUIET_LOGS,
        raise_on_error=False,
        **kwargs,
    )
    assert result.success  # failed checks are recorded on the instance; the run succeeds
    return result


def predictions(toy, n: int) -> dg.ExecuteInProcessResult:
    return run(toy, toy.names.predictions_job, n)


def labels_arrived(toy, n: int) -> dg.ExecuteInProcessResult:
    """The predictions job's labels step alone, for an arrival day with no events of its own."""
    return run(toy, toy.names.predictions_job, n, asset_selection=[toy.names.labels])


def measure(toy, n: int) -> dg.ExecuteInProcessResult:
    return run(toy, toy.names.performance_job, n)


def tick(toy, sensor_name: str, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=toy.instance,
        cursor=cursor,
        definitions=toy.defs,
        sensor_name=sensor_name,
        resources=toy.defs.resources,
    )
    return toy.defs.resolve_sensor_def(sensor_name).evaluate_tick(context)


def launch(toy, sensor_name: str, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run what a sensor requested, tagged as the daemon tags it."""
    job = toy.defs.resolve_sensor_def(sensor_name).job_name
    tags = {**request.tags, "dagster/sensor_name": sensor_name, "dagster/run_key": request.run_key}
    result = toy.defs.resolve_job_def(job).execute_in_process(
        instance=toy.instance,
        partition_key=request.partition_key,
        run_config=request.run_config or QUIET_LOGS,
        tags=tags,
        raise_on_error=False,
    )
    assert result.success
    return result


def materialization(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    metadata = event.step_materialization_data.materialization.metadata
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def counts(labels_metadata: dict) -> dict:
    return {
        k: labels_metadata[k] for k in ("received", "attached", "orphans", "duplicates", "late")
    }


def evaluation(toy, key: dg.AssetCheckKey, result: dg.ExecuteInProcessResult):
    found = check_in_run(toy.instance, key, result.run_id)
    assert found is not None, f"{key.name} was not evaluated in run {result.run_id}"
    return found


# -- tests ------------------------------------------------------------------------------------


def test_sla_check_passes_a_normal_day_warns_on_slow_and_fails_on_errors(watched):
    toy, rng = watched, np.random.default_rng(0)
    serve(toy, 6)
    serve(toy, 7, latency=rng.uniform(50, 300, 1000))  # p95 ~290 ms: past warn (200)
    serve(toy, 8, errors=100)  # 10% errors: past error_rate's error level (5%)

    normal = evaluation(toy, toy.names.sla_check, predictions(toy, 6))
    assert normal.passed, normal.reason_text

    slow = evaluation(toy, toy.names.sla_check, predictions(toy, 7))
    assert not slow.passed and slow.severity is dg.AssetCheckSeverity.WARN
    assert slow.value("worst_metric") == "latency_p95_ms"
    assert 200 < slow.value("worst_value") < 500

    failing = evaluation(toy, toy.names.sla_check, predictions(toy, 8))
    assert not failing.passed and failing.severity is dg.AssetCheckSeverity.ERROR
    assert failing.value("worst_metric") == "error_rate"
    assert failing.reason_text.startswith("error_rate 0.1")
    assert "> error limit 0.05" in failing.reason_text


def test_delayed_labels_attach_late_quarantine_orphans_and_are_measured_again(watched):
    toy = watched
    scores = serve(toy, 6)
    predictions(toy, 6)
    labels = truth(6)
    early, rest = labels.iloc[:600], labels.iloc[600:]
    unknown = pd.DataFrame({"request_id": [f"unknown-{i}" for i in range(4)], "label": 1})
    invalid = rest.iloc[:1].assign(label=2)  # sent again, valid, on day 8
    arrive(toy, 7, pd.concat([early, unknown, invalid], ignore_index=True))
    on_day_7 = materialization(labels_arrived(toy, 7), toy.names.labels)
    assert counts(on_day_7) == {
        "received": 605,
        "attached": 600,
        "orphans": 5,
        "duplicates": 0,
        "late": 0,
    }
    assert on_day_7["prediction_partitions"] == day(6)
    quarantined = toy.store.read_table("labels_quarantine", day(7)).set_index("request_id")
    assert quarantined["reason"].to_dict() == {
        **{i: UNKNOWN_REQUEST_ID for i in unknown["request_id"]},
        invalid["request_id"].iloc[0]: NOT_BINARY,
    }

    first = tick(toy, toy.names.measure_sensor)
    [request] = first.run_requests
    assert request.partition_key == day(6) and request.run_key.startswith(f"measure-toy-{day(6)}-")
    measured = materialization(
        launch(toy, toy.names.measure_sensor, request), toy.names.realized_performance
    )
    assert measured["labelled_rows"] == 600

    # The rest arrive on day 8, with 100 of day 7's sent again (now flipped: the last write
    # wins) and 10 rows repeated within the file.
    resent = early.iloc[:100].assign(label=lambda f: 1 - f["label"])
    arrive(toy, 8, pd.concat([rest, resent, rest.iloc[:10]], ignore_index=True))
    on_day_8 = materialization(labels_arrived(toy, 8), toy.names.labels)
    assert counts(on_day_8) == {
        "received": 510,
        "attached": 500,
        "orphans": 0,
        "duplicates": 110,  # 10 within the file, 100 replacing day 7's
        "late": 500,  # day 6 was measured already: it must be measured again
    }

    second = tick(toy, toy.names.measure_sensor, first.cursor)
    [again] = second.run_requests
    assert again.partition_key == day(6) and again.run_key != request.run_key
    assert tick(toy, toy.names.measure_sensor, second.cursor).skip_message.startswith(
        "no labels arrived"
    )

    remeasured = materialization(
        launch(toy, toy.names.measure_sensor, again), toy.names.realized_performance
    )
    assert remeasured["labelled_rows"] == 1000  # every prediction's label, once
    assert remeasured["superseded_labels"] == 100
    final = pd.concat([resent, labels.iloc[100:]]).set_index("request_id")["label"]
    final = final.reindex(labels["request_id"]).to_numpy()
    predicted = scores >= 0.5
    assert remeasured["accuracy"] == pytest.approx((predicted == final).mean())
    assert remeasured["accuracy"] != pytest.approx((predicted == labels["label"]).mean())


def test_a_quality_drop_retrains_on_performance_but_too_few_labels_do_not(watched):
    toy = watched
    serve(toy, 6)
    predictions(toy, 6)
    features, _ = toy_day(6)
    toy.store.write_table("feature_table", features, day(6))  # the retrain guard counts these
    contradicting = truth(6, flipped=True)

    arrive(toy, 7, contradicting.iloc[:100])
    labels_arrived(toy, 7)
    thin = evaluation(toy, toy.names.realized_check, measure(toy, 6))
    assert not thin.passed and thin.severity is dg.AssetCheckSeverity.ERROR
    assert thin.value("performance_breach") is False
    assert "100 labelled rows" in thin.reason_text
    assert not tick(toy, toy.names.retrain_sensor).run_requests

    arrive(toy, 8, contradicting.iloc[100:])
    labels_arrived(toy, 8)
    drop = evaluation(toy, toy.names.realized_check, measure(toy, 6))
    assert not drop.passed and drop.severity is dg.AssetCheckSeverity.ERROR
    assert drop.value("performance_breach") is True
    assert drop.value("worst_metric") in toy.spec.performance.judged_metrics
    assert f"{drop.value('worst_metric')} " in drop.reason_text
    assert "its error bound" in drop.reason_text
    audit = AuditResource(home=str(toy.home)).log()
    [breach] = audit.events("toy", [AuditAction.PERFORMANCE_BREACH])
    assert breach.evidence["partition"] == day(6)

    [request] = tick(toy, toy.names.retrain_sensor).run_requests
    assert request.tags[TRIGGER_TAG] == "performance"
    assert request.tags["driftgate/as_of"] == day(6)
    assert request.run_key == f"retrain-toy-{day(6)}"
    [requested] = audit.events("toy", [AuditAction.RETRAIN_REQUESTED])
    assert requested.evidence["trigger"] == "performance"


def test_estimated_performance_passes_like_the_reference_and_disagrees_with_flipped_labels(
    watched,
):
    toy = watched
    serve(toy, 6)
    estimated = evaluation(toy, toy.names.estimated_check, predictions(toy, 6))
    assert estimated.passed, estimated.reason_text

    arrive(toy, 7, truth(6, flipped=True))
    labels_arrived(toy, 7)
    agreement = evaluation(toy, toy.names.agreement_check, measure(toy, 6))
    assert not agreement.passed and agreement.severity is dg.AssetCheckSeverity.WARN
    assert agreement.value("estimated") - agreement.value("realized") > 0.05
    assert "exceeds the tolerance" in agreement.reason_text


def test_safe_mode_rolls_back_on_a_quality_breach_not_on_missing_evidence(toy):
    toy = with_telemetry(toy, safe_mode=SAFE_MODE)
    crown(toy, train(toy, every=2))
    serve(toy, 6)  # by v2
    predictions(toy, 6)
    contradicting = truth(6, flipped=True)

    arrive(toy, 7, contradicting.iloc[:100])
    labels_arrived(toy, 7)
    measure(toy, 6)
    held = tick(toy, toy.names.rollback_sensor)
    assert not held.run_requests and "lack of evidence" in held.skip_message

    arrive(toy, 8, contradicting.iloc[100:])
    labels_arrived(toy, 8)
    measure(toy, 6)
    [request] = tick(toy, toy.names.rollback_sensor).run_requests
    assert request.run_key == "safe-mode-toy-v2"
    assert request.tags["driftgate/version"] == "1"
    assert request.tags["driftgate/rollback_of"] == "2"

    rollback = launch(toy, toy.names.rollback_sensor, request)
    assert toy.registry.fake.get_alias("toy", CHAMPION).version == "1"
    assert materialization(rollback, toy.names.performance_reference)["version"] == "1"


def test_safe_mode_sees_a_breach_behind_a_later_day_that_lacks_evidence(toy):
    toy = with_telemetry(toy, safe_mode=SAFE_MODE)
    crown(toy, train(toy, every=2))
    for n in (6, 7):
        serve(toy, n)  # by v2
        predictions(toy, n)
    arrive(toy, 8, pd.concat([truth(6, flipped=True), truth(7).iloc[:50]]))
    labels_arrived(toy, 8)
    measure(toy, 6)  # a breach
    measure(toy, 7)  # too few labels: evaluated last
    [request] = tick(toy, toy.names.rollback_sensor).run_requests
    assert request.tags["driftgate/version"] == "1"


def test_safe_mode_ignores_a_breach_on_days_the_previous_champion_served(toy):
    toy = with_telemetry(toy, safe_mode=SAFE_MODE)
    serve(toy, 6)  # by v1
    predictions(toy, 6)
    crown(toy, train(toy, every=2))  # v2 takes over before day 6's labels arrive
    arrive(toy, 7, truth(6, flipped=True))
    labels_arrived(toy, 7)
    check = evaluation(toy, toy.names.realized_check, measure(toy, 6))
    assert check.blocks and check.value("breached_versions") == "1"
    held = tick(toy, toy.names.rollback_sensor)
    assert not held.run_requests and "another version's days" in held.skip_message


def files_holding(root, secrets: list[bytes]) -> list[str]:
    """Files under `root` holding any of `secrets`: in their bytes, or (Parquet, where
    encoding and compression could hide them) in their decoded values."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet":
            data += repr(pq.read_table(path).to_pylist()).encode()
        if any(secret in data for secret in secrets):
            found.append(str(path))
    return found


def test_no_raw_email_or_subject_id_reaches_the_disk(watched, tmp_path_factory):
    toy = watched
    secrets = [EMAIL_DOMAIN.encode(), SUBJECT.encode()]
    control = tmp_path_factory.mktemp("control")
    write_parquet_atomically(
        pd.DataFrame({"email": [f"someone{EMAIL_DOMAIN}"], "subject": [f"{SUBJECT}0"]}),
        control / "leak.parquet",
    )
    assert files_holding(control, secrets)  # the scan does find what was written

    serve(toy, 6)
    predictions(toy, 6)
    arrive(toy, 7, truth(6))
    labels_arrived(toy, 7)
    measure(toy, 6)

    events = toy.store.read_table("prediction_events", day(6))
    assert events["subject_hash"].notna().all() and "email" not in events.columns
    # instance_for_test keeps the event log, run storage and compute logs in a temporary
    # folder of its own, outside the home: both are scanned.
    instance_storage = Path(toy.instance.root_directory)
    assert list(instance_storage.rglob("*.db"))
    for root in (toy.home, instance_storage):
        assert files_holding(root, secrets) == []
