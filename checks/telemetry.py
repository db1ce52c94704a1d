"""Telemetry checks: service levels, realized and estimated quality, and whether the estimate
agreed with what the labels later showed.

None of them blocks a step (nothing downstream consumes these assets); the retrain sensor and
safe mode act on their ERROR-level failures.
"""

import dagster as dg

from assets.telemetry import ESTIMATED, REALIZED, SLA, load_performance_references
from orchestrator.core.audit import AuditAction, AuditEvent
from orchestrator.core.errors import DataError
from orchestrator.core.gates import GateResult, GateVerdict
from orchestrator.core.performance import (
    evaluate_disagreement,
    evaluate_versions,
    version_breaches,
)
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.telemetry import evaluate_sla, sla_breaches
from orchestrator.metadata import check_result, frame_table
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, DriftgateHomeResource


def no_evidence(gate: str, error: DataError) -> dg.AssetCheckResult:
    """Missing evidence fails at error level, and says it is not a breach: the retrain sensor
    and safe mode act on breaches only."""
    result = GateResult(gate, GateVerdict.BLOCK, f"no evidence: {error}")
    return check_result(result, performance_breach=False)


def judge_performance(
    spec: MonitoredModelSpec, store, table_name: str, day: str
) -> tuple[GateResult, dict]:
    """The day's realized or estimated performance table (its name is also the gate's), each
    version against its own reference; and the per-group breaches as metadata. Missing
    evidence fails and says it is no breach."""
    try:
        table = store.read_table(table_name, day)
        versions = sorted(table["model_version"].astype(str).unique())
        references = load_performance_references(spec, store, versions)
    except DataError as e:
        reason = f"no evidence: {e}"
        return GateResult(table_name, GateVerdict.BLOCK, reason, {"performance_breach": False}), {}
    result = evaluate_versions(table, references, spec.performance, gate=table_name)
    breaches = version_breaches(table, references, spec.performance)
    return result, {"breaches": frame_table(breaches)}


def build_telemetry_checks(
    spec: MonitoredModelSpec, names: ModelNames, daily: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    checks = [_sla_check(spec, names, daily), _realized_check(spec, names, daily)]
    if spec.performance.estimates:
        checks += [_estimated_check(spec, names, daily), _agreement_check(spec, names, daily)]
    return checks


def _sla_check(spec, names: ModelNames, daily) -> dg.AssetChecksDefinition:
    limits = ", ".join(f"{k} ≤ {v.warn}/{v.error}" for k, v in spec.telemetry.sla.limits.items())

    @dg.asset_check(
        asset=names.sla_metrics,
        name=names.sla_check.name,
        partitions_def=daily,
        description=f"{spec.name}: every model version and segment meets its service levels "
        f"(warn/error: {limits}).",
    )
    def sla_metrics_within_sla(
        context: dg.AssetCheckExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.AssetCheckResult:
        try:
            stats = driftgate_home.store(spec).read_table(SLA, context.partition_key)
        except DataError as e:
            return check_result(GateResult("sla", GateVerdict.BLOCK, f"no evidence: {e}"))
        breaches = sla_breaches(stats, spec.telemetry.sla)
        return check_result(evaluate_sla(stats, spec.telemetry.sla), breaches=frame_table(breaches))

    return sla_metrics_within_sla


def _realized_check(spec, names: ModelNames, daily) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.realized_performance,
        name=names.realized_check.name,
        partitions_def=daily,
        description=f"{spec.name}: realized quality, per version and segment, within the "
        f"bounds learned on the champion's reference (warn at {spec.performance.warn_k}·std, "
        f"error at {spec.performance.error_k}·std).",
    )
    def realized_performance_within_thresholds(
        context: dg.AssetCheckExecutionContext,
        driftgate_home: DriftgateHomeResource,
        audit: AuditResource,
    ) -> dg.AssetCheckResult:
        day = context.partition_key
        result, breaches = judge_performance(spec, driftgate_home.store(spec), REALIZED, day)
        if result.metrics.get("performance_breach"):
            audit.log().append(
                AuditEvent(
                    AuditAction.PERFORMANCE_BREACH,
                    f"check:{names.realized_check.name}",
                    spec.name,
                    dagster_run_id=context.run.run_id,
                    evidence={"partition": day, "reason": result.reason},
                )
            )
        return check_result(result, **breaches)

    return realized_performance_within_thresholds


def _estimated_check(spec, names: ModelNames, daily) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.estimated_performance,
        name=names.estimated_check.name,
        partitions_def=daily,
        description=f"{spec.name}: estimated quality (before labels) within the bounds learned "
        "on the champion's reference: an early warning, confirmed or not once labels arrive.",
    )
    def estimated_performance_within_thresholds(
        context: dg.AssetCheckExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.AssetCheckResult:
        store = driftgate_home.store(spec)
        result, breaches = judge_performance(spec, store, ESTIMATED, context.partition_key)
        return check_result(result, **breaches)

    return estimated_performance_within_thresholds


def _agreement_check(spec, names: ModelNames, daily) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.realized_performance,
        name=names.agreement_check.name,
        partitions_def=daily,
        additional_deps=[names.estimated_performance],
        description=f"{spec.name}: the ROC AUC estimated before labels is within "
        f"{spec.performance.disagreement_tolerance} of the realized one. A larger gap is "
        "flagged (WARN): the estimate cannot be trusted for this model until understood.",
    )
    def realized_performance_agrees_with_estimate(
        context: dg.AssetCheckExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.AssetCheckResult:
        store, day = driftgate_home.store(spec), context.partition_key
        try:
            estimated, realized = store.read_table(ESTIMATED, day), store.read_table(REALIZED, day)
        except DataError as e:
            return no_evidence("estimation_agreement", e)
        return check_result(evaluate_disagreement(estimated, realized, spec.performance))

    return realized_performance_agrees_with_estimate
