"""Gates judge evidence and fail closed: missing or invalid evidence is BLOCK with a reason.

Each `evaluate_*` returns a frozen GateResult carrying the threshold it applied; none raises for
a failed gate.
"""

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.core.drift import DriftReport, DriftVerdict
from orchestrator.core.spec import FreshnessPolicy, RetrainPolicy


class GateVerdict(StrEnum):
    PASS = "pass"
    WARN = "warn"
    BLOCK = "block"


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: GateVerdict
    reason: str
    metrics: Mapping[str, float | str | None] = field(default_factory=dict)
    threshold: Mapping[str, float] = field(default_factory=dict)  # what the verdict applied

    @property
    def blocks(self) -> bool:
        return self.verdict is GateVerdict.BLOCK


def evaluate_drift(report: DriftReport | None) -> GateResult:
    """BLOCK on drift at error level (a column, a segment, or the joint distribution) or on
    columns that could not be judged; WARN on warnings."""
    gate = "drift"
    if report is None or not report.columns:
        return GateResult(gate, GateVerdict.BLOCK, "no drift report covering any column")
    metrics, threshold = _worst_evidence(report)
    if report.verdict is DriftVerdict.DRIFT:
        return GateResult(gate, GateVerdict.BLOCK, _drift_reason(report), metrics, threshold)
    if unjudged := _unjudged(report):
        return GateResult(gate, GateVerdict.BLOCK, f"cannot judge {unjudged}", metrics, threshold)
    if report.verdict is not DriftVerdict.OK:
        warned = report.columns_with(DriftVerdict.WARN)
        segments = [s.segment for s in report.segments if s.verdict is DriftVerdict.WARN]
        reason = f"drift at warn level in {warned + segments or 'the joint distribution'}"
        return GateResult(gate, GateVerdict.WARN, reason, metrics, threshold)
    reason = "every column within its warn level"
    return GateResult(gate, GateVerdict.PASS, reason, metrics, threshold)


def _worst_evidence(report: DriftReport) -> tuple[dict, dict]:
    """Metrics and levels of what decided: the worst column, the worst column of the worst
    segment when only a segment drifted, or the joint distribution when only it did."""
    worst, where = report.ranked()[0], ""
    segments = report.ranked_segments()
    if worst.verdict is not DriftVerdict.DRIFT and report.drifted_segments:
        segment = segments[0]
        worst, where = (
            max(
                segment.columns,
                key=lambda c: (c.verdict is DriftVerdict.DRIFT, c.worst.statistic or 0),
            ),
            segment.segment,
        )
    metrics = {
        "worst_column": f"{worst.column} in {where}" if where else worst.column,
        "worst_method": worst.worst.method,
        "worst_statistic": worst.worst.statistic,
        "drifted_columns": len(report.drifted_columns),
        "drifted_segments": len(report.drifted_segments),
        # The retrain sensor reads this: drift in one segment or in the joint distribution
        # is a breach as much as drift in a whole column.
        "drift_breach": report.verdict is DriftVerdict.DRIFT,
    }
    threshold = {"warn": worst.worst.threshold.warn, "error": worst.worst.threshold.error}
    joint = report.multivariate
    if report.multivariate_drift and worst.verdict is not DriftVerdict.DRIFT:
        metrics |= {
            "worst_column": "(joint distribution)",
            "worst_method": joint.method,
            "worst_statistic": joint.statistic,
        }
        threshold = {"error_low": joint.error_band[0], "error_high": joint.error_band[1]}
    return metrics, threshold


def _unjudged(report: DriftReport) -> str:
    """What could not be judged and why: overall columns with too little data or invalid,
    and invalid segments or an invalid joint-distribution result (too few rows in a segment
    is reported, not blocking)."""
    problems = [
        f"{c.column} ({c.worst.reason})"
        for c in report.columns
        if c.verdict in (DriftVerdict.INSUFFICIENT_DATA, DriftVerdict.INVALID)
    ]
    problems += [
        f"segment {s.segment} ({next(c.worst.reason for c in s.columns if c.verdict is s.verdict)})"
        for s in report.segments
        if s.verdict is DriftVerdict.INVALID
    ]
    multivariate = report.multivariate
    if multivariate is not None and multivariate.verdict is DriftVerdict.INVALID:
        problems.append(f"the joint distribution ({multivariate.reason})")
    return "; ".join(problems)


def _drift_reason(report: DriftReport) -> str:
    parts = []
    if report.drifted_columns:
        worst = report.ranked()[0]
        parts.append(
            f"drift at error level in {report.drifted_columns}; worst {worst.column} "
            f"({worst.worst.method} {worst.worst.reason})"
        )
    drifted = [s for s in report.ranked_segments() if s.drifted_columns]
    parts += [f"segment {s.segment}: drift in {s.drifted_columns}" for s in drifted[:3]]
    if len(drifted) > 3:
        parts.append(f"and {len(drifted) - 3} more segments")
    if report.multivariate_drift:
        parts.append(f"joint distribution: {report.multivariate.reason}")
    return "; ".join(parts)


def evaluate_freshness(
    newest_partition_end: dt.datetime | None, now: dt.datetime, policy: FreshnessPolicy
) -> GateResult:
    """The newest partition must have ended within `policy.max_age_hours` of `now` (UTC)."""
    gate, threshold = "freshness", {"max_age_hours": policy.max_age_hours}
    if newest_partition_end is None:
        return GateResult(
            gate, GateVerdict.BLOCK, "no partition has been materialized yet", threshold=threshold
        )
    age_hours = (now - newest_partition_end).total_seconds() / 3600
    metrics = {"age_hours": round(age_hours, 2)}
    if age_hours > policy.max_age_hours:
        reason = (
            f"newest partition ended {age_hours:.1f} h ago; the policy allows "
            f"{policy.max_age_hours} h"
        )
        return GateResult(gate, GateVerdict.BLOCK, reason, metrics, threshold)
    reason = f"newest partition ended {age_hours:.1f} h ago"
    return GateResult(gate, GateVerdict.PASS, reason, metrics, threshold)


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed data-contract expectation and what was observed."""

    expectation: str
    column: str | None
    observed: str


def evaluate_contract(n_rows: int, failures: Sequence[ExpectationFailure]) -> GateResult:
    """Every expectation must hold (none may fail), on a partition that has rows."""
    gate, threshold = "contract", {"failed_expectations_allowed": 0}
    metrics = {"rows": n_rows, "failed_expectations": len(failures)}
    if n_rows == 0:
        return GateResult(gate, GateVerdict.BLOCK, "the partition is empty", metrics, threshold)
    if failures:
        named = ", ".join(f"{f.expectation}({f.column})" for f in failures[:5])
        reason = f"{len(failures)} expectation(s) failed: {named}"
        return GateResult(gate, GateVerdict.BLOCK, reason, metrics, threshold)
    reason = f"{n_rows} rows meet the contract"
    return GateResult(gate, GateVerdict.PASS, reason, metrics, threshold)


def evaluate_candidate(
    candidate: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    policy: RetrainPolicy,
) -> GateResult:
    """The candidate must not be worse than the champion by more than the policy's tolerance.

    `champion` is None when there is no champion yet (the first model must then reach
    `policy.min_metric`), and empty when there is one that could not be scored (BLOCK).
    """
    gate, metric = "evaluation", policy.metric
    score = (candidate or {}).get(metric)
    if score is None or not math.isfinite(score):
        return GateResult(gate, GateVerdict.BLOCK, f"candidate has no finite {metric}")
    if champion is None:
        threshold = {"min_metric": policy.min_metric}
        passed = score >= policy.min_metric
        reason = (
            f"no champion; {metric} {score:.4f} {'>=' if passed else '<'} minimum "
            f"{policy.min_metric}"
        )
        verdict = GateVerdict.PASS if passed else GateVerdict.BLOCK
        return GateResult(gate, verdict, reason, {"candidate": score, "metric": metric}, threshold)
    best = champion.get(metric)
    if best is None or not math.isfinite(best):
        return GateResult(
            gate, GateVerdict.BLOCK, f"champion has no finite {metric} on the holdout"
        )
    delta = score - best
    threshold = {"tolerance": policy.evaluation_tolerance}
    metrics = {"candidate": score, "champion": best, "delta": delta, "metric": metric}
    reason = f"{metric} candidate {score:.4f} vs champion {best:.4f} (delta {delta:+.4f})"
    if delta < -policy.evaluation_tolerance:
        reason += f" is worse than the tolerance {policy.evaluation_tolerance}"
        return GateResult(gate, GateVerdict.BLOCK, reason, metrics, threshold)
    return GateResult(gate, GateVerdict.PASS, reason, metrics, threshold)
