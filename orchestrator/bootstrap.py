"""Start monitoring a model: freeze its reference window, then train the first candidate.

The drift check compares each day with the champion's training data, and before any champion
with the configured reference window; so the window's partitions are materialized first (with
their freshness and contract checks, not the drift check, which has nothing to compare with
yet), profiled as the reference, and the first candidate is trained on exactly that window.
"""

import datetime as dt
from collections.abc import Callable, Mapping

import dagster as dg

from orchestrator.core.errors import DataError
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import (
    EVALUATED_AT_TAG,
    TRIGGER_TAG,
    TRIGGERED_BY_TAG,
    CheckEvaluation,
    check_in_run,
)
from orchestrator.naming import ModelNames

# Runs here are driven from a terminal that shows its own summary; Dagster's step log stays in
# the instance (and the UI). A failed blocking check is an expected outcome, hence CRITICAL.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def replay_time(day: dt.date) -> str:
    """A past day is judged as of 02:00 UTC the next morning, as a daily schedule would have."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2), dt.UTC).isoformat()


def freeze_reference_day(
    spec: MonitoredModelSpec, defs: dg.Definitions, instance: dg.DagsterInstance, day: dt.date
) -> dg.ExecuteInProcessResult:
    """Materialize one reference partition with its freshness and contract checks."""
    from orchestrator.components import build_model_definitions

    names, model_defs = ModelNames(spec.name), build_model_definitions(spec)
    wanted = {names.freshness_check, names.contract_check}
    selected = [a for a in model_defs.assets if names.feature_table in a.keys]
    selected += [c for c in model_defs.asset_checks if set(c.check_keys) & wanted]
    return dg.materialize(
        selected,
        instance=instance,
        partition_key=day.isoformat(),
        resources=defs.resources,
        tags={EVALUATED_AT_TAG: replay_time(day)},
        run_config=QUIET_LOGS,
        raise_on_error=False,
    )


def train_first_candidate(
    spec: MonitoredModelSpec,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    triggered_by: str,
    extra_config: Mapping | None = None,
) -> dg.ExecuteInProcessResult:
    """Run `retrain_<model>` on the reference window, recording who asked for it."""
    names = ModelNames(spec.name)
    first, last = spec.reference_window
    op = defs.resolve_assets_def(names.training_dataset).op.name
    return defs.resolve_job_def(names.retrain_job).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={
            "ops": {op: {"config": {"first": first, "last": last}}},
            **QUIET_LOGS,
            **(extra_config or {}),
        },
        tags={TRIGGER_TAG: "bootstrap", TRIGGERED_BY_TAG: triggered_by},
    )


def freeze_reference_window(
    spec: MonitoredModelSpec,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    on_day: Callable[[dt.date], None] = lambda day: None,
) -> None:
    """Freeze every reference partition, then profile them as `reference_profile`; stop at the
    first day that is missing or breaks the contract (DataError naming the day). Frozen days
    stay frozen: re-running resumes."""
    names = ModelNames(spec.name)
    for day in spec.reference_days:
        result = freeze_reference_day(spec, defs, instance, day)
        contract = check_in_run(instance, names.contract_check, result.run_id)
        if not result.success or contract is None or not contract.passed:
            reason = contract.reason_text if contract else "the partition did not materialize"
            raise DataError(f"{spec.name}: reference day {day} is not usable: {reason}")
        on_day(day)
    profile_reference(spec, defs, instance)


def profile_reference(
    spec: MonitoredModelSpec, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    """Materialize `reference_profile` from the frozen reference partitions."""
    from orchestrator.components import build_model_definitions

    names, model_defs = ModelNames(spec.name), build_model_definitions(spec)
    result = dg.materialize(
        [a for a in model_defs.assets if names.reference_profile in a.keys],
        instance=instance,
        resources=defs.resources,
        run_config=QUIET_LOGS,
        raise_on_error=False,
    )
    if not result.success:
        raise DataError(f"{spec.name}: the reference profile failed (Dagster run {result.run_id})")


def first_candidate(
    spec: MonitoredModelSpec, defs: dg.Definitions, instance: dg.DagsterInstance, actor: str
) -> tuple[dg.ExecuteInProcessResult, CheckEvaluation]:
    """Train v1 on the reference window; its evaluation gate (against `min_metric`)."""
    run = train_first_candidate(spec, defs, instance, actor)
    evaluation = check_in_run(instance, ModelNames(spec.name).evaluation_check, run.run_id)
    if evaluation is None:
        raise DataError(
            f"{spec.name}: the first training run registered no version (Dagster run {run.run_id})"
        )
    return run, evaluation
