"""Retraining assets: training dataset, candidate model (MLflow), and the champion alias."""

import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd

from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.candidates import train_and_register
from orchestrator.core.audit import AuditAction, AuditEvent
from orchestrator.core.errors import DataError, PromotionRefused
from orchestrator.core.labels import PREDICTION_PARTITION, join_labels
from orchestrator.core.registry import (
    GATE_TAG_PREFIX,
    TAG_CODE_VERSION,
    TAG_DAGSTER_RUN_ID,
    TAG_TRAINING_PARTITIONS,
    TAG_TRIGGER,
    TAG_TRIGGERED_BY,
)
from orchestrator.core.spec import MonitoredModelSpec, date_range
from orchestrator.evidence import (
    TRIGGER_TAG,
    TRIGGERED_BY_TAG,
    check_in_run,
    materialization_metadata,
)
from orchestrator.governance import Governance
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, DriftgateHomeResource, RegistryResource
from orchestrator.safe_mode import safe_mode_rollback


class TrainingWindowConfig(dg.Config):
    """The labelled partitions to train on: `last` back `training_window_days`, or first..last."""

    last: str | None = None
    first: str | None = None


class PromotionConfig(dg.Config):
    """Promote `version`; or, with `rollback_reason`, roll champion back to it (safe mode)."""

    version: str  # for a rollback, "" means the champion before the current one
    actor: str = "sensor"
    rollback_reason: str | None = None
    automatic: bool = False  # safe mode's rollback: decided again, only from its sensor


def training_window(
    spec: MonitoredModelSpec, store: PartitionStore, config: TrainingWindowConfig
) -> list[str]:
    """Frozen feature partitions in the window: `first..last`, or the `training_window_days`
    up to `last` (default: the newest frozen partition)."""
    frozen = store.partitions("feature_table")
    if not frozen:
        raise DataError(f"{spec.name}: no feature partition has been frozen yet")
    last = dt.date.fromisoformat(config.last or frozen[-1])
    first = (
        dt.date.fromisoformat(config.first)
        if config.first
        else last - dt.timedelta(days=spec.retrain.training_window_days - 1)
    )
    wanted = {day.isoformat() for day in date_range(first, last)}
    return [p for p in frozen if p in wanted]


def labelled_frame(
    spec: MonitoredModelSpec, store: PartitionStore, partitions: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """The window's feature rows whose label has arrived (the last write of each request id
    wins), and the partitions that contributed rows."""
    features = pd.concat(
        [
            store.read_table("feature_table", p).assign(**{PREDICTION_PARTITION: p})
            for p in partitions
        ],
        ignore_index=True,
    )
    first, last = (dt.date.fromisoformat(p) for p in (partitions[0], partitions[-1]))
    joined = join_labels(
        features,
        store.labels_for(first, last),
        request_id=spec.request_id_column,
        label=spec.label_column,
    ).labelled
    used = sorted(joined[PREDICTION_PARTITION].unique())
    frame = joined.drop(columns=[PREDICTION_PARTITION]).rename(columns={"label": spec.label_column})
    return frame, used


def code_version() -> str:
    """$DRIFTGATE_CODE_VERSION (set it in deployments), else the git commit, else the package."""
    if os.environ.get("DRIFTGATE_CODE_VERSION"):
        return os.environ["DRIFTGATE_CODE_VERSION"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"git-{commit}"
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"driftgate-{version('driftgate')}"


def build_training_assets(spec: MonitoredModelSpec, names: ModelNames) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=names.training_dataset,
        deps=[names.feature_table],
        group_name=spec.name,
        kinds={"parquet"},
        description=f"{spec.name}: recent feature partitions joined with their delayed labels.",
    )
    def training_dataset(
        context: dg.AssetExecutionContext,
        config: TrainingWindowConfig,
        driftgate_home: DriftgateHomeResource,
        audit: AuditResource,
    ) -> dg.MaterializeResult:
        store = driftgate_home.store(spec)
        window = training_window(spec, store, config)
        frame, partitions = labelled_frame(spec, store, window) if window else (None, [])
        audit.log().append(retrain_started(spec, context, partitions))
        if not partitions:
            raise DataError(f"{spec.name}: no labelled rows in the training window {window}")
        store.write_table("training_dataset", frame, context.run.run_id)
        return dg.MaterializeResult(
            metadata={
                "snapshot": context.run.run_id,
                "partitions": ",".join(partitions),
                "dagster/row_count": len(frame),
                "positive_rate": float(frame[spec.label_column].mean()) if len(frame) else 0.0,
            }
        )

    @dg.asset(
        key=names.candidate_model,
        deps=[names.training_dataset],
        group_name=spec.name,
        kinds={"mlflow", "scikitlearn"},
        description=f"{spec.name}: a model trained on the training dataset, logged to MLflow and "
        "registered as a new version with lineage tags. It awaits the evaluation gate and an "
        "approval before it can become champion.",
    )
    def candidate_model(
        context: dg.AssetExecutionContext,
        driftgate_home: DriftgateHomeResource,
        model_registry: RegistryResource,
        audit: AuditResource,
    ) -> dg.MaterializeResult:
        dataset = materialization_metadata(context, names.training_dataset)
        frame = driftgate_home.store(spec).read_table("training_dataset", str(dataset["snapshot"]))
        candidate = train_and_register(
            spec,
            frame,
            model_registry.registry(),
            audit.log(),
            lineage_tags(context, names, str(dataset["partitions"])),
            context.run.run_id,
        )
        return dg.MaterializeResult(
            metadata={
                "version": candidate.version.version,
                "mlflow_run_id": candidate.version.run_id,
                **{k: round(v, 4) for k, v in candidate.metrics.items()},
            }
        )

    @dg.asset(
        key=names.champion_model,
        deps=[names.candidate_model],
        group_name=spec.name,
        kinds={"mlflow"},
        description=f"{spec.name}: the version serving as `champion` in MLflow. Materializing it "
        "moves the alias, only for an approved version whose gates all passed.",
    )
    def champion_model(
        context: dg.AssetExecutionContext,
        config: PromotionConfig,
        model_registry: RegistryResource,
        audit: AuditResource,
    ) -> dg.MaterializeResult:
        governance = Governance(spec, model_registry.registry(), audit.log())
        run_id = context.run.run_id
        if config.rollback_reason and config.automatic:
            version, reason = automatic_rollback(spec, names, context, audit, config)
            governance.rollback(config.actor, reason, version, run_id, automatic=True)
            return dg.MaterializeResult(metadata={"version": version, "rolled_back": reason})
        if config.rollback_reason:  # by a person: an approver, checked by governance
            reason, to = config.rollback_reason, config.version or None
            version = governance.rollback(config.actor, reason, to, run_id)
            return dg.MaterializeResult(metadata={"version": version, "rolled_back": reason})
        decision = governance.promote(config.version, config.actor, run_id)
        approved_by = governance.registry.get_version(spec.name, decision.version).approved_by
        return dg.MaterializeResult(
            metadata={
                "version": decision.version,
                "replaced_version": decision.replaces or "none",
                "approved_by": approved_by,
            }
        )

    return [training_dataset, candidate_model, champion_model]


def automatic_rollback(
    spec: MonitoredModelSpec, names: ModelNames, context, audit: AuditResource, config
) -> tuple[str, str]:
    """Safe mode decides again here: run config alone (anyone may type it in the launchpad)
    never moves the champion; only a run the safe-mode sensor launched, while its check is
    still failing, rolls back, and only to the version safe mode names."""
    launched_by = context.run.tags.get("dagster/sensor_name")
    if launched_by != names.rollback_sensor:
        raise PromotionRefused(
            f"{spec.name}: automatic rollbacks come only from {names.rollback_sensor} "
            f"(this run: {launched_by or 'launched by hand'}); use `driftgate rollback`"
        )
    target, reason, _ = safe_mode_rollback(spec, context.instance, audit.log())
    if target is None or target != config.version:
        raise PromotionRefused(f"{spec.name}: safe mode no longer calls for a rollback: {reason}")
    return target, reason


def retrain_started(spec: MonitoredModelSpec, context, partitions: list[str]) -> AuditEvent:
    """Links the sensor's request (by run key) to the Dagster run that carries it out."""
    tags = context.run.tags
    return AuditEvent(
        AuditAction.RETRAIN_STARTED,
        tags.get(TRIGGERED_BY_TAG, "unknown"),
        spec.name,
        dagster_run_id=context.run.run_id,
        evidence={
            "run_key": tags.get("dagster/run_key"),
            "trigger": tags.get(TRIGGER_TAG),
            "partitions": partitions,
        },
    )


def lineage_tags(context, names: ModelNames, partitions: str) -> dict[str, str]:
    """Where the version comes from: run, data, code, trigger, and the data gate it passed."""
    tags = context.run.tags
    contract = check_in_run(context.instance, names.training_contract_check, context.run.run_id)
    lineage = {
        TAG_DAGSTER_RUN_ID: context.run.run_id,
        TAG_TRAINING_PARTITIONS: partitions,
        TAG_CODE_VERSION: code_version(),
        TAG_TRIGGER: tags.get(TRIGGER_TAG, "manual"),
        TAG_TRIGGERED_BY: tags.get(TRIGGERED_BY_TAG) or tags.get("dagster/user", "unknown"),
    }
    if contract is not None:  # no recorded contract result: no tag, and promotion refuses
        lineage[f"{GATE_TAG_PREFIX}training_data_contract"] = contract.verdict
    return lineage
