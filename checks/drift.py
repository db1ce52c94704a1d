"""Drift gate: a window of daily profiles compared with the champion's reference profile."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from assets.profiles import StoredReference, day_profile, load_reference
from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.core.audit import AuditAction, AuditEvent
from orchestrator.core.drift import DriftReport, DriftVerdict, apply_persistence, summarize
from orchestrator.core.errors import DataError
from orchestrator.core.gates import GateResult, GateVerdict, evaluate_drift
from orchestrator.core.profile import Profile
from orchestrator.core.spec import MonitoredModelSpec, date_range
from orchestrator.metadata import check_result, drift_metadata
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, DriftgateHomeResource, RegistryResource


@dataclass(frozen=True)
class WindowJudgement:
    report: DriftReport
    days: list[str]  # the days of the judged window that had data


def _window_sample(
    spec: MonitoredModelSpec, store: PartitionStore, days: list[str]
) -> pd.DataFrame | None:
    """Rows for the domain classifier: the window's daily samples, resampled to the bound.
    None when no day has one (profiled before the classifier was enabled): the report then
    says the joint distribution was not judged."""
    sampled = [d for d in days if store.table_path("feature_sample", d).exists()]
    if not sampled:
        return None
    frame = store.read_partitions("feature_sample", sampled)
    rows = min(len(frame), spec.drift.multivariate.sample_rows)
    return frame.sample(n=rows, random_state=spec.drift.multivariate.seed)


def judge_window(
    spec: MonitoredModelSpec, store: PartitionStore, reference: StoredReference, day: str
) -> WindowJudgement:
    """The window of `window_days` ending on `day`, judged with persistence over the windows
    ending on each of the `persistence.n` days up to it (oldest first)."""
    policy, detector = spec.drift, reference.detector
    end = dt.date.fromisoformat(day)
    span = policy.window_days + policy.persistence.n - 1
    profiles = {
        d.isoformat(): day_profile(detector, store, d.isoformat())
        for d in date_range(end - dt.timedelta(days=span - 1), end)
    }
    if profiles[day] is None:
        raise DataError(f"{spec.name}: no profile and no frozen rows for {day}")
    reports, days = [], []
    for back in reversed(range(policy.persistence.n)):
        last = end - dt.timedelta(days=back)
        days = [
            d.isoformat()
            for d in date_range(last - dt.timedelta(days=policy.window_days - 1), last)
            if profiles.get(d.isoformat()) is not None
        ]
        if not days:
            continue
        window = Profile.merge_all(profiles[d] for d in days)
        wants_sample = back == 0 and policy.multivariate.enabled
        sample = _window_sample(spec, store, days) if wants_sample else None
        reports.append(detector.compare(window, sample=sample))
    report = apply_persistence(reports, policy.persistence.m, policy.persistence.n)
    return WindowJudgement(report, days)


def build_drift_check(
    spec: MonitoredModelSpec, names: ModelNames, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.feature_profile,
        name=names.drift_check.name,
        blocking=True,
        partitions_def=partitions_def,
        description=f"{spec.name}: the window of days ending on this one is within its drift "
        "thresholds against the champion's training data: every feature, every segment and "
        "(if enabled) the joint distribution. Blocks at error level.",
    )
    def feature_profile_within_drift_thresholds(
        context: dg.AssetCheckExecutionContext,
        driftgate_home: DriftgateHomeResource,
        model_registry: RegistryResource,
        audit: AuditResource,
    ) -> dg.AssetCheckResult:
        store, day = driftgate_home.store(spec), context.partition_key
        try:
            reference = load_reference(spec, store, model_registry.registry())
            judged = judge_window(spec, store, reference, day)
        except DataError as e:
            return check_result(GateResult("drift", GateVerdict.BLOCK, f"no evidence: {e}"))
        if judged.report.verdict is DriftVerdict.DRIFT:
            audit.log().append(
                AuditEvent(
                    AuditAction.DRIFT_BREACH,
                    f"check:{names.drift_check.name}",
                    spec.name,
                    dagster_run_id=context.run.run_id,
                    evidence={"partition": day, **summarize(judged.report)},
                )
            )
        metadata = drift_metadata(judged.report, judged.days, reference.span)
        return check_result(evaluate_drift(judged.report), **metadata)

    return feature_profile_within_drift_thresholds
