"""Evidence read back from the Dagster instance: check evaluations and runs.

Sensors and assets decide on what Dagster recorded, not on what a process remembers.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg

# Dagster exposes check history only through the event log storage; its status filter type is
# not re-exported at the top level in 1.13.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

# Enough history for a 30-day budget window with re-evaluations; older breaches cannot matter.
_HISTORY_LIMIT = 500


@dataclass(frozen=True)
class CheckEvaluation:
    check_name: str
    partition: str | None
    passed: bool
    severity: dg.AssetCheckSeverity
    metadata: dict
    run_id: str
    storage_id: int

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity is dg.AssetCheckSeverity.ERROR

    @property
    def verdict(self) -> str:
        value = self.metadata.get("verdict")
        return getattr(value, "value", value) or ("pass" if self.passed else "block")

    def value(self, key: str) -> object:
        item = self.metadata.get(key)
        return getattr(item, "value", item)

    @property
    def reason_text(self) -> str:
        return str(self.value("reason") or "")

    def summary(self, label: str) -> str:
        """`label ok|WARN|FAILED`, with the worst column and its score where there is one."""
        outcome = "ok" if self.passed else ("WARN" if not self.blocks else "FAILED")
        worst, statistic = self.value("worst_column"), self.value("worst_statistic")
        if worst is not None and not self.passed and statistic is not None:
            statistic = float(statistic)
            return (
                f"{label} {outcome} (worst {worst}: {self.value('worst_method')} {statistic:.3f})"
            )
        if not self.passed:
            return f"{label} {outcome} ({self.reason_text})"
        return f"{label} {outcome}"


def check_history(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> list[CheckEvaluation]:
    """Completed evaluations of one check, newest first."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        key,
        limit=_HISTORY_LIMIT,
        status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED},
    )
    evaluations = []
    for record in records:
        data = record.event.dagster_event.event_specific_data if record.event else None
        if data is None:
            continue
        evaluations.append(
            CheckEvaluation(
                check_name=key.name,
                partition=record.partition or data.partition,
                passed=data.passed,
                severity=data.severity,
                metadata=dict(data.metadata),
                run_id=record.run_id,
                storage_id=record.id,
            )
        )
    return evaluations


def latest_per_partition(evaluations: list[CheckEvaluation]) -> dict[str, CheckEvaluation]:
    latest: dict[str, CheckEvaluation] = {}
    for evaluation in evaluations:  # newest first: keep the first seen per partition
        if evaluation.partition is not None:
            latest.setdefault(evaluation.partition, evaluation)
    return latest


def breach_outcomes(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, breach_flag: str
) -> tuple[list[dt.date], list[dt.date]]:
    """(breached, passed) partitions by the latest evaluation of a drift or performance check.

    Breached: failed at error level with the check's breach flag set (`drift_breach`: drift
    in a column, a segment or the joint distribution; `performance_breach`: a metric past its
    learned bound). Passed: not failing at error level (a warning counts as passed). A block
    for lack of evidence is neither: it says nothing about drift or quality.
    """
    breached, passed = [], []
    for partition, evaluation in latest_per_partition(check_history(instance, key)).items():
        day = dt.date.fromisoformat(partition)
        if evaluation.blocks and evaluation.value(breach_flag):
            breached.append(day)
        elif not evaluation.blocks:
            passed.append(day)
    return sorted(breached), sorted(passed)


def check_in_run(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, run_id: str
) -> CheckEvaluation | None:
    return next((e for e in check_history(instance, key) if e.run_id == run_id), None)


def materialization_metadata(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, key: dg.AssetKey
) -> dict[str, object]:
    """Metadata of `key`'s materialization in this run; outside one, the latest on the instance.

    Reading this run's own output first keeps two concurrent retraining runs from training on,
    or judging, each other's data.
    """
    records = context.instance.all_logs(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    in_run = [r.asset_materialization for r in records if r.asset_materialization.asset_key == key]
    materialization = in_run[-1] if in_run else _latest(context.instance, key)
    if materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey):
    event = instance.get_latest_materialization_event(key)
    return event.asset_materialization if event else None


def newest_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> dt.date | None:
    partitions = instance.get_materialized_partitions(key)
    return max((dt.date.fromisoformat(p) for p in partitions), default=None)


def retrain_triggers(instance: dg.DagsterInstance, job_name: str) -> list[dt.date]:
    """`as_of` partitions of every retraining run launched for this job (any outcome).

    A failed retraining still counts against cooldown and budget: a broken trainer must not turn
    a drift episode into a storm of runs. Operators re-run it by hand.
    """
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name))
    return sorted(
        dt.date.fromisoformat(run.tags[AS_OF_TAG]) for run in runs if AS_OF_TAG in run.tags
    )


AS_OF_TAG = "driftgate/as_of"
ONSET_TAG = "driftgate/onset"
TRIGGER_TAG = "driftgate/trigger"
TRIGGERED_BY_TAG = "driftgate/triggered_by"
EVALUATED_AT_TAG = "driftgate/evaluated_at"
