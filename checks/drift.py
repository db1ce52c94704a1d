"""Drift gate: a feature partition compared with the reference the champion was trained on."""

import dagster as dg
import pandas as pd

from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.core.audit import AuditAction, AuditEvent
from orchestrator.core.drift import DriftDetector, DriftSpec, summarize
from orchestrator.core.errors import DataError
from orchestrator.core.gates import GateResult, GateVerdict, evaluate_drift
from orchestrator.core.registry import CHAMPION, ModelRegistry
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.metadata import check_result, drift_table
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, DriftgateHomeResource, RegistryResource


def reference_partitions(spec: MonitoredModelSpec, registry: ModelRegistry) -> list[str]:
    """The champion's training partitions; before any champion, the configured window."""
    champion = registry.get_alias(spec.name, CHAMPION)
    if champion is not None and champion.training_partitions:
        return champion.training_partitions
    return [day.isoformat() for day in spec.reference_days]


def load_reference(
    spec: MonitoredModelSpec, store: PartitionStore, registry: ModelRegistry
) -> tuple[pd.DataFrame, list[str]]:
    partitions = reference_partitions(spec, registry)
    return store.read_partitions("feature_table", partitions), partitions


def build_drift_check(
    spec: MonitoredModelSpec, names: ModelNames, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.feature_table,
        name=names.drift_check.name,
        blocking=True,
        partitions_def=partitions_def,
        description=f"{spec.name}: every feature's distribution is within its drift thresholds "
        "against the champion's training data. Blocks at error level.",
    )
    def feature_table_within_drift_threshold(
        context: dg.AssetCheckExecutionContext,
        driftgate_home: DriftgateHomeResource,
        model_registry: RegistryResource,
        audit: AuditResource,
    ) -> dg.AssetCheckResult:
        store, partition = driftgate_home.store(spec), context.partition_key
        try:
            reference, partitions = load_reference(spec, store, model_registry.registry())
            detector = DriftDetector(DriftSpec.for_model(spec)).fit(reference)
            report = detector.compare(store.read_table("feature_table", partition))
        except DataError as e:
            return check_result(GateResult("drift", GateVerdict.BLOCK, f"no evidence: {e}"))
        if report.drifted_columns:
            audit.log().append(
                AuditEvent(
                    AuditAction.DRIFT_BREACH,
                    f"check:{names.drift_check.name}",
                    spec.name,
                    dagster_run_id=context.run.run_id,
                    evidence={"partition": partition, **summarize(report)},
                )
            )
        return check_result(
            evaluate_drift(report),
            drift=drift_table(report),
            reference_partitions=f"{partitions[0]}..{partitions[-1]} ({len(partitions)} days)",
        )

    return feature_table_within_drift_threshold
