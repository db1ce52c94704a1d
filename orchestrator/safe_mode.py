"""Safe mode's one decision: roll back now, and to which version.

Shared by the sensor that requests the rollback run and the asset that carries it out, which
decides again rather than trusting run config anyone could have typed.
"""

import dagster as dg

from orchestrator.core.audit import AuditLog
from orchestrator.core.history import current, fallback
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import check_history


def safe_mode_rollback(
    spec: MonitoredModelSpec, instance: dg.DagsterInstance, audit: AuditLog
) -> tuple[str | None, str]:
    """(version to roll back to, why) when the watched check failed at error level in a run
    that started after the current champion took over; (None, why not) otherwise."""
    policy = spec.safe_mode
    key = dg.AssetCheckKey(dg.AssetKey(policy.asset_path), policy.check_name)
    events = audit.events(spec.name)
    tenure = current(events)
    target = fallback(events)
    if tenure is None or target is None:
        return None, "no earlier champion to fall back to"
    latest = max(check_history(instance, key), key=lambda e: e.storage_id, default=None)
    if latest is None or not latest.blocks:
        return None, f"{policy.check} is not failing at error level"
    record = instance.get_run_record_by_id(latest.run_id)
    if record is None or record.create_timestamp <= tenure.since:
        return None, f"{policy.check} failed before v{tenure.version} became champion"
    reason = f"safe mode: {policy.check} failed at error level: {latest.reason_text}"
    return target, reason
