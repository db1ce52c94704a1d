"""The daily run: contract and freshness gate the profile; the drift check judges the profile."""

from orchestrator.adapters.partition_store import write_parquet_atomically
from orchestrator.core.audit import AuditAction
from orchestrator.evidence import check_in_run
from orchestrator.resources import AuditResource
from tests.wiring.conftest import day


def test_drifted_partition_fails_blocking_drift_check_and_is_audited(toy):
    result = toy.materialize_day(6, shift=1.5)
    drift = check_in_run(toy.instance, toy.names.drift_check, result.run_id)
    assert drift is not None and drift.blocks
    assert drift.value("worst_column") == "x1"
    table = drift.metadata["drift"].value
    assert {row.data["column"] for row in table.records} == {"x1", "x2", "x3", "color", "shop"}
    assert {"threshold.warn", "threshold.error"} <= set(drift.metadata)
    assert drift.value("window") == f"{day(6)}..{day(6)} (1 day)"
    # The drifted day keeps its profile: later windows and persistence are judged from it.
    assert toy.instance.get_latest_materialization_event(toy.names.feature_profile) is not None
    assert toy.store.artifact_path("feature_profile", day(6)).exists()
    breaches = AuditResource(home=str(toy.home)).log().events("toy", [AuditAction.DRIFT_BREACH])
    assert [e.evidence["partition"] for e in breaches] == [day(6)]
    assert breaches[0].dagster_run_id == result.run_id


def test_clean_partition_passes_every_gate_and_builds_the_profile(toy):
    result = toy.materialize_day(6)
    for key in (toy.names.freshness_check, toy.names.contract_check, toy.names.drift_check):
        evaluation = check_in_run(toy.instance, key, result.run_id)
        assert evaluation is not None and evaluation.passed, key
    assert result.success
    assert toy.instance.get_latest_materialization_event(toy.names.feature_profile) is not None


def test_contract_violation_blocks_with_the_failing_expectation_named(toy):
    features = toy.store.read_source("features", day(1))
    features.loc[:9, "color"] = "purple"
    write_parquet_atomically(features, toy.store.source_path("features", day(6)))
    result = toy.run_monitor(6)
    freshness = check_in_run(toy.instance, toy.names.freshness_check, result.run_id)
    drift = check_in_run(toy.instance, toy.names.drift_check, result.run_id)
    assert freshness.passed and drift is None  # the contract stops the profile, so its check
    contract = check_in_run(toy.instance, toy.names.contract_check, result.run_id)
    assert contract is not None and contract.blocks
    failures = contract.metadata["failed_expectations"].value
    assert "expect_column_values_to_be_in_set" in failures and "purple" in failures
    assert toy.instance.get_latest_materialization_event(toy.names.feature_profile) is None


def test_stale_feature_table_fails_freshness(toy):
    toy.land(6)
    result = toy.run_monitor(6, evaluated_at="2026-01-20T00:00:00+00:00")
    freshness = check_in_run(toy.instance, toy.names.freshness_check, result.run_id)
    assert freshness is not None and freshness.blocks
    assert "the policy allows 30.0 h" in freshness.reason_text
    audited = AuditResource(home=str(toy.home)).log().events("toy", [AuditAction.GATE_EVALUATED])
    assert [(e.evidence["gate"], e.evidence["verdict"]) for e in audited] == [
        ("freshness", "block")
    ]
    assert audited[0].dagster_run_id == result.run_id


def test_missing_source_partition_fails_the_run_without_materializing(toy):
    result = toy.defs.resolve_job_def(toy.names.monitor_job).execute_in_process(
        instance=toy.instance, partition_key=day(9), raise_on_error=False
    )
    assert not result.success
    assert toy.instance.get_materialized_partitions(toy.names.feature_table) == set()
    assert not toy.store.table_path("feature_table", day(9)).exists()
