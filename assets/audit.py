"""The audit trail as an asset: lineage in the Dagster UI leads from the champion to it."""

import dagster as dg

from orchestrator.audit_views import current_champions, verify_findings
from orchestrator.core.audit import utc_now
from orchestrator.core.history import champion_at
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, RegistryResource


def build_audit_trail(spec: MonitoredModelSpec, names: ModelNames) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.audit_trail,
        deps=[names.champion_model],
        group_name=spec.name,
        kinds={"audit"},
        check_specs=[dg.AssetCheckSpec(names.audit_check.name, asset=names.audit_trail)],
        description=f"{spec.name}: the append-only, hash-chained record of every drift breach, "
        "retraining decision, gate, approval, promotion and rollback. Its check verifies every "
        "hash and link, and that no move of champion was left half done.",
    )
    def audit_trail(audit: AuditResource, model_registry: RegistryResource):
        log = audit.log()
        events = log.events()
        registry = model_registry.registry()
        findings = verify_findings(
            events,
            current_champions(registry, [spec.name]),
            registry.list_versions(spec.name),
            {spec.name: spec.approval},
            log.appended(),
        )
        mine = [e for e in events if e.model == spec.name]
        tenure = champion_at(mine, utc_now())
        lines = [f"- {f.kind}: {f.detail} ({f.remedy})" for f in findings]
        yield dg.MaterializeResult(
            metadata={
                "events": len(mine),
                "head_hash": events[-1].hash if events else "empty",
                "champion": f"v{tenure.version} since {tenure.since.isoformat()}"
                if tenure
                else "none",
            }
        )
        yield dg.AssetCheckResult(
            check_name=names.audit_check.name,
            passed=not findings,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"findings": dg.MetadataValue.md("\n".join(lines) or "none")},
            description=f"{len(findings)} finding(s)" if findings else "every hash and link holds",
        )

    return audit_trail
