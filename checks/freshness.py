"""Freshness gate: the feature table's newest partition is recent enough to monitor on."""

import datetime as dt

import dagster as dg

from orchestrator.core.audit import gate_event
from orchestrator.core.gates import evaluate_freshness
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import EVALUATED_AT_TAG, newest_partition
from orchestrator.metadata import check_result
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource


def evaluation_time(context: dg.AssetCheckExecutionContext) -> dt.datetime:
    """Wall-clock now, unless the run replays history and says when it is evaluated as of."""
    stamp = context.run.tags.get(EVALUATED_AT_TAG)
    return dt.datetime.fromisoformat(stamp) if stamp else dt.datetime.now(dt.UTC)


def build_freshness_check(spec: MonitoredModelSpec, names: ModelNames) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.feature_table,
        name=names.freshness_check.name,
        blocking=True,
        description=f"{spec.name}: the newest feature partition ended within "
        f"{spec.freshness.max_age_hours} h.",
    )
    def feature_table_is_fresh(
        context: dg.AssetCheckExecutionContext, audit: AuditResource
    ) -> dg.AssetCheckResult:
        newest = newest_partition(context.instance, names.feature_table)
        newest_end = (
            dt.datetime.combine(newest + dt.timedelta(days=1), dt.time(), dt.UTC)
            if newest
            else None
        )
        result = evaluate_freshness(newest_end, evaluation_time(context), spec.freshness)
        if result.blocks:
            audit.log().append(
                gate_event(
                    spec.name,
                    f"check:{names.freshness_check.name}",
                    result,
                    context.run.run_id,
                    newest_partition=newest,
                )
            )
        return check_result(result, newest_partition=str(newest))

    return feature_table_is_fresh
