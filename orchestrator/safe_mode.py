"""Safe mode's one decision: roll back now, and to which version.

Shared by the sensor that requests the rollback run and the asset that carries it out, which
decides again rather than trusting run config anyone could have typed.
"""

from typing import NamedTuple

import dagster as dg

from orchestrator.core.audit import AuditLog
from orchestrator.core.history import current, fallback
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import CheckEvaluation, check_history


class SafeModeCall(NamedTuple):
    """Safe mode's decision: roll back `champion` (the current one) to `target`, or not
    (`target` None), and why."""

    target: str | None
    reason: str
    champion: str | None


def safe_mode_rollback(
    spec: MonitoredModelSpec, instance: dg.DagsterInstance, audit: AuditLog
) -> SafeModeCall:
    """Roll back when the watched check's latest evaluation of some partition failed at error
    level, as a breach by the current champion, in a run that started after it took over."""
    policy = spec.safe_mode
    key = dg.AssetCheckKey(dg.AssetKey(policy.asset_path), policy.check_name)
    events = audit.events(spec.name)
    tenure = current(events)
    target = fallback(events)
    champion = tenure.version if tenure else None
    if tenure is None or target is None:
        return SafeModeCall(None, "no earlier champion to fall back to", champion)
    latest: dict[str | None, CheckEvaluation] = {}
    for evaluation in check_history(instance, key):  # newest first: the latest per partition
        latest.setdefault(evaluation.partition, evaluation)
    failing = sorted(
        (e for e in latest.values() if e.blocks), key=lambda e: e.storage_id, reverse=True
    )
    if not failing:
        return SafeModeCall(None, f"{policy.check} is not failing at error level", champion)
    breaches = [e for e in failing if _breach_by(e, tenure.version)]
    if not breaches:
        newest = failing[0]
        why = "for lack of evidence" if _lacks_evidence(newest) else "on another version's days"
        reason = f"{policy.check} failed {why}, not as a breach by v{tenure.version}: "
        return SafeModeCall(None, reason + newest.reason_text, champion)
    for breach in breaches:
        record = instance.get_run_record_by_id(breach.run_id)
        if record is not None and record.create_timestamp > tenure.since:
            reason = f"safe mode: {policy.check} failed at error level: {breach.reason_text}"
            return SafeModeCall(target, reason, champion)
    reason = f"{policy.check} failed before v{tenure.version} became champion"
    return SafeModeCall(None, reason, champion)


def _breach_by(evaluation: CheckEvaluation, version: str) -> bool:
    """A failure for lack of evidence says nothing about the champion (`performance_breach`
    or `drift_breach` false), and a performance breach of the days another version served
    is not the champion's (`breached_versions`)."""
    if _lacks_evidence(evaluation):
        return False
    versions = evaluation.value("breached_versions")
    return versions is None or version in str(versions).split(",")


def _lacks_evidence(evaluation: CheckEvaluation) -> bool:
    return any(evaluation.value(flag) is False for flag in ("performance_breach", "drift_breach"))
