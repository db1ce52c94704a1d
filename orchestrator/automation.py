"""Jobs and sensors per monitored model: monitor daily, retrain on drift, promote on approval."""

import dagster as dg

from assets.training import PromotionConfig, TrainingWindowConfig
from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.core.audit import AuditAction, AuditEvent, AuditLog
from orchestrator.core.retraining import RetrainAction, RetrainDecision, should_retrain
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import (
    AS_OF_TAG,
    ONSET_TAG,
    TRIGGER_TAG,
    TRIGGERED_BY_TAG,
    breach_outcomes,
    retrain_triggers,
)
from orchestrator.governance import Governance
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, DriftgateHomeResource, RegistryResource
from orchestrator.safe_mode import safe_mode_rollback

_AUDIT_ACTION = {
    RetrainAction.RETRAIN: AuditAction.RETRAIN_REQUESTED,
    RetrainAction.COOLDOWN: AuditAction.RETRAIN_SUPPRESSED,
    RetrainAction.BUDGET: AuditAction.RETRAIN_SUPPRESSED,
    RetrainAction.WAIT_FOR_LABELS: AuditAction.RETRAIN_WAITING,
}


def build_jobs(
    spec: MonitoredModelSpec, names: ModelNames, partitions_def: dg.PartitionsDefinition
) -> dict[str, object]:
    telemetry = spec.telemetry.enabled
    promoted = [names.champion_model, names.reference_profile, names.audit_trail]
    jobs = {
        "monitor": dg.define_asset_job(
            names.monitor_job,
            selection=dg.AssetSelection.assets(names.feature_table, names.feature_profile),
            partitions_def=partitions_def,
            description="Land one day of features and gate it: freshness, contract, drift.",
        ),
        "retrain": dg.define_asset_job(
            names.retrain_job,
            selection=dg.AssetSelection.assets(names.training_dataset, names.candidate_model),
            description="Build the training dataset, train and register a candidate, evaluate it.",
        ),
        "promote": dg.define_asset_job(
            names.promote_job,
            selection=dg.AssetSelection.assets(
                *promoted, *([names.performance_reference] if telemetry else [])
            ),
            tags={"driftgate/champion": names.model},
            description="Move the champion alias to an approved version whose gates passed, "
            "profile the data it was trained on as the new drift reference"
            + (", score it as the new performance reference" if telemetry else "")
            + ", and verify the audit trail.",
        ),
    }
    if telemetry:
        daily = [names.prediction_events, names.sla_metrics, names.labels]
        if spec.performance.estimates:
            daily.append(names.estimated_performance)
        jobs["predictions"] = dg.define_asset_job(
            names.predictions_job,
            selection=dg.AssetSelection.assets(*daily),
            partitions_def=partitions_def,
            description="Compact one day of prediction events, measure its service levels, "
            "attach the labels that arrived, and estimate quality before labels.",
        )
        jobs["performance"] = dg.define_asset_job(
            names.performance_job,
            selection=dg.AssetSelection.assets(names.realized_performance),
            partitions_def=partitions_def,
            description="Measure one day's realized quality from the labels arrived so far.",
        )
    return jobs


def retrain_decision(
    spec: MonitoredModelSpec, names: ModelNames, instance: dg.DagsterInstance, store: PartitionStore
) -> tuple[RetrainDecision, str]:
    """The decision on drift, or on realized performance when that one asks for more; with
    the trigger it is about. Both run under the same guards (cooldown, budget, labels)."""
    triggers = retrain_triggers(instance, names.retrain_job)
    signals = [("drift", breach_outcomes(instance, names.drift_check, "drift_breach"))]
    if spec.telemetry.enabled:
        performance = breach_outcomes(instance, names.realized_check, "performance_breach")
        signals.append(("performance", performance))
    decisions = [
        (
            should_retrain(
                spec.name, *outcome, triggers, store.labelled_rows, spec.retrain, signal=trigger
            ),
            trigger,
        )
        for trigger, outcome in signals
    ]
    # RETRAIN first, then a suppression worth auditing, then no breach.
    return min(decisions, key=lambda d: _URGENCY.index(d[0].action))


_URGENCY = [
    RetrainAction.RETRAIN,
    RetrainAction.WAIT_FOR_LABELS,
    RetrainAction.BUDGET,
    RetrainAction.COOLDOWN,
    RetrainAction.NO_BREACH,
]


def audit_once(
    decision: RetrainDecision,
    trigger: str,
    cursor: str | None,
    spec: MonitoredModelSpec,
    names: ModelNames,
    audit: AuditLog,
) -> str:
    """Audit a decision the first time the sensor makes it, not on every tick; new cursor."""
    fingerprint = f"{trigger}:{decision.action}:{decision.onset}:{decision.as_of}"
    if fingerprint != cursor:
        audit.append(
            AuditEvent(
                _AUDIT_ACTION[decision.action],
                f"sensor:{names.retrain_sensor}",
                spec.name,
                evidence={
                    "trigger": trigger,
                    "reason": decision.reason,
                    "onset": decision.onset,
                    "as_of": decision.as_of,
                    "run_key": decision.run_key,
                },
            )
        )
    return fingerprint


def retrain_request(
    decision: RetrainDecision, trigger: str, names: ModelNames, training_op: str
) -> dg.RunRequest:
    """Train on what happened since the breach began: the old world is what went stale."""
    window = TrainingWindowConfig(first=decision.onset.isoformat(), last=decision.as_of.isoformat())
    return dg.RunRequest(
        run_key=decision.run_key,
        run_config=dg.RunConfig(ops={training_op: window}),
        tags={
            AS_OF_TAG: decision.as_of.isoformat(),
            ONSET_TAG: decision.onset.isoformat(),
            TRIGGER_TAG: trigger,
            TRIGGERED_BY_TAG: f"sensor:{names.retrain_sensor}",
        },
    )


def build_retrain_sensor(
    spec: MonitoredModelSpec, names: ModelNames, job, training_op: str
) -> dg.SensorDefinition:
    @dg.sensor(
        name=names.retrain_sensor,
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Retrain {spec.name} when its drift check fails at error level"
        + (" or its realized performance breaches its bounds" if spec.telemetry.enabled else "")
        + ", guarded by "
        f"a {spec.retrain.cooldown_days}-day cooldown, a budget of "
        f"{spec.retrain.budget_per_30_days} per 30 days and enough new labelled data.",
    )
    def retrain_on_drift(
        context: dg.SensorEvaluationContext,
        driftgate_home: DriftgateHomeResource,
        audit: AuditResource,
    ):
        store = driftgate_home.store(spec)
        decision, trigger = retrain_decision(spec, names, context.instance, store)
        if decision.action is RetrainAction.NO_BREACH:
            return dg.SkipReason(decision.reason)
        cursor = audit_once(decision, trigger, context.cursor, spec, names, audit.log())
        context.update_cursor(cursor)
        if not decision.retrain:
            return dg.SkipReason(decision.reason)
        return retrain_request(decision, trigger, names, training_op)

    return retrain_on_drift


def build_promote_sensor(
    spec: MonitoredModelSpec, names: ModelNames, job, champion_op: str
) -> dg.SensorDefinition:
    @dg.sensor(
        name=names.promote_sensor,
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Promote an approved {spec.name} version whose gates all passed to champion.",
    )
    def promote_on_approval(
        context: dg.SensorEvaluationContext, model_registry: RegistryResource, audit: AuditResource
    ):
        governance = Governance(spec, model_registry.registry(), audit.log())
        allowed, refused = governance.next_promotion()
        actor = f"sensor:{names.promote_sensor}"
        fingerprint = ";".join(f"{d.version}:{d.explain()}" for d in refused)
        if refused and fingerprint != context.cursor:  # audit each refusal once
            for decision in refused:
                governance.record_refusal(decision, actor, dagster_run_id=None)
            context.update_cursor(fingerprint)
        if allowed is None:
            explained = "; ".join(f"v{d.version}: {d.explain()}" for d in refused)
            return dg.SkipReason(explained or "no approved version awaits promotion")
        config = PromotionConfig(version=allowed.version, actor=actor)
        # A run that aborted or was refused at run time may be retried once allowed again:
        # each failed attempt on record makes a new run key (the daemon dedupes on it).
        failed = [AuditAction.PROMOTION_ABORTED, AuditAction.PROMOTION_REFUSED]
        attempts = governance.audit.events(spec.name, failed)
        attempt = sum(e.version == allowed.version for e in attempts)
        return dg.RunRequest(
            run_key=f"promote-{spec.name}-v{allowed.version}-{attempt}",
            run_config=dg.RunConfig(ops={champion_op: config}),
            tags={"driftgate/version": allowed.version},
        )

    return promote_on_approval


def build_safe_mode_sensor(
    spec: MonitoredModelSpec, names: ModelNames, job, champion_op: str
) -> dg.SensorDefinition:
    @dg.sensor(
        name=names.rollback_sensor,
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Safe mode: roll {spec.name}'s champion back to the version it replaced "
        f"when {spec.safe_mode.check} fails at error level.",
    )
    def rollback_on_failed_check(context: dg.SensorEvaluationContext, audit: AuditResource):
        target, reason, current = safe_mode_rollback(spec, context.instance, audit.log())
        if target is None:
            return dg.SkipReason(reason)
        actor = f"sensor:{names.rollback_sensor}"
        config = PromotionConfig(
            version=target, actor=actor, rollback_reason=reason, automatic=True
        )
        return dg.RunRequest(
            run_key=f"safe-mode-{spec.name}-v{current}",  # one automatic rollback per champion
            run_config=dg.RunConfig(ops={champion_op: config}),
            tags={"driftgate/version": target, "driftgate/rollback_of": current},
        )

    return rollback_on_failed_check


def build_measure_sensor(spec: MonitoredModelSpec, names: ModelNames, job) -> dg.SensorDefinition:
    @dg.sensor(
        name=names.measure_sensor,
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Measure {spec.name}'s realized performance again for every prediction day "
        "a newly arrived labels partition attached labels to.",
    )
    def measure_on_labels(context: dg.SensorEvaluationContext):
        after = int(context.cursor) if context.cursor else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=names.labels, after_storage_id=after),
            limit=1000,
            ascending=True,
        ).records
        if not records:
            return dg.SkipReason("no labels arrived since the last tick")
        context.update_cursor(str(records[-1].storage_id))
        touched: dict[str, int] = {}  # prediction partition -> newest labels record
        for record in records:
            value = record.asset_materialization.metadata.get("prediction_partitions")
            for partition in filter(None, str(getattr(value, "value", "") or "").split(",")):
                touched[partition] = record.storage_id
        if not touched:
            return dg.SkipReason("the labels that arrived attached to no prediction")
        return [
            dg.RunRequest(
                run_key=f"measure-{spec.name}-{partition}-{storage_id}",
                partition_key=partition,
            )
            for partition, storage_id in sorted(touched.items())
        ]

    return measure_on_labels
