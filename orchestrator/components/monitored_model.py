"""The MonitoredModel Component: one YAML block declares one monitored model.

    type: orchestrator.components.MonitoredModel
    attributes:
      name: churn
      features: [...]
      ...

Its attributes are MonitoredModelSpec's fields, so a typo or an out-of-range value fails when
definitions load, naming the field and the YAML line.
"""

import warnings

import dagster as dg

from assets.audit import build_audit_trail
from assets.features import build_feature_table
from assets.profiles import build_feature_profile, build_reference_profile
from assets.telemetry import build_telemetry_assets
from assets.training import build_training_assets
from checks.contract import build_feature_contract_check, build_training_contract_check
from checks.drift import build_drift_check
from checks.evaluation import build_evaluation_check
from checks.freshness import build_freshness_check
from checks.telemetry import build_telemetry_checks
from orchestrator.automation import (
    build_jobs,
    build_measure_sensor,
    build_promote_sensor,
    build_retrain_sensor,
    build_safe_mode_sensor,
)
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.naming import ModelNames


class MonitoredModel(dg.Component, dg.Resolvable, MonitoredModelSpec):
    """A production model watched by driftgate: its features, gates, and retraining loop."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_model_definitions(MonitoredModelSpec.model_validate(self.model_dump()))


def build_model_definitions(spec: MonitoredModelSpec) -> dg.Definitions:
    # Partitioned asset checks are a Dagster preview, and label windows that reach past the
    # newest partition (allow_nonexistent_upstream_partitions) a beta; we rely on both on
    # purpose (one verdict per daily partition; a day's labels keep arriving for two weeks),
    # so their warnings would only be noise for every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build(spec)


def _build(spec: MonitoredModelSpec) -> dg.Definitions:
    names = ModelNames(spec.name)
    daily = dg.DailyPartitionsDefinition(start_date=spec.partitions_start)
    training_dataset, candidate_model, champion_model = build_training_assets(spec, names)
    jobs = build_jobs(spec, names, daily)
    telemetry = spec.telemetry.enabled
    return dg.Definitions(
        assets=[
            build_feature_table(spec, names, daily),
            build_reference_profile(spec, names),
            build_feature_profile(spec, names, daily),
            training_dataset,
            candidate_model,
            champion_model,
            build_audit_trail(spec, names),
            *(build_telemetry_assets(spec, names, daily) if telemetry else []),
        ],
        asset_checks=[
            build_freshness_check(spec, names),
            build_feature_contract_check(spec, names, daily),
            build_drift_check(spec, names, daily),
            build_training_contract_check(spec, names),
            build_evaluation_check(spec, names),
            *(build_telemetry_checks(spec, names, daily) if telemetry else []),
        ],
        jobs=list(jobs.values()),
        schedules=[
            dg.build_schedule_from_partitioned_job(jobs[job], hour_of_day=2)
            for job in ("monitor", "predictions")
            if job in jobs
        ],
        sensors=[
            build_retrain_sensor(spec, names, jobs["retrain"], training_dataset.op.name),
            build_promote_sensor(spec, names, jobs["promote"], champion_model.op.name),
            *([build_measure_sensor(spec, names, jobs["performance"])] if telemetry else []),
            *(
                [build_safe_mode_sensor(spec, names, jobs["promote"], champion_model.op.name)]
                if spec.safe_mode.enabled
                else []
            ),
        ],
    )
