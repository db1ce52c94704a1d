"""Safe mode's one decision: roll back now, and to which version.

Shared by the sensor that requests the rollback run and the asset that carries it out, which
decides again rather than trusting run config anyone could have typed.
"""

from typing import NamedTuple

import dagster as dg

from orchestrator.core.audit import AuditLog
from orchestrator.core.history import current, fallback
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import check_history


class SafeModeCall(NamedTuple):
    """Safe mode's decision: roll back `champion` (the current one) to `target`, or not
    (`target` None), and why."""

    target: str | None
    reason: str
    champion: str | None


def safe_mode_rollback(
    spec: MonitoredModelSpec, instance: dg.DagsterInstance, audit: AuditLog
) -> SafeModeCall:
    """Roll back when the watched check failed at error level in a run that started after
    the current champion took over."""
    policy = spec.safe_mode
    key = dg.AssetCheckKey(dg.AssetKey(policy.asset_path), policy.check_name)
    events = audit.events(spec.name)
    tenure = current(events)
    target = fallback(events)
    champion = tenure.version if tenure else None
    if tenure is None or target is None:
        return SafeModeCall(None, "no earlier champion to fall back to", champion)
    latest = max(check_history(instance, key), key=lambda e: e.storage_id, default=None)
    if latest is None or not latest.blocks:
        return SafeModeCall(None, f"{policy.check} is not failing at error level", champion)
    if any(latest.value(flag) is False for flag in ("performance_breach", "drift_breach")):
        # A check that failed for lack of evidence says nothing about the champion.
        reason = f"{policy.check} failed for lack of evidence: {latest.reason_text}"
        return SafeModeCall(None, reason, champion)
    record = instance.get_run_record_by_id(latest.run_id)
    if record is None or record.create_timestamp <= tenure.since:
        reason = f"{policy.check} failed before v{tenure.version} became champion"
        return SafeModeCall(None, reason, champion)
    reason = f"safe mode: {policy.check} failed at error level: {latest.reason_text}"
    return SafeModeCall(target, reason, champion)
