"""Gates judge evidence and fail closed: missing or invalid evidence is BLOCK with a reason.

Each `evaluate_*` returns a frozen GateResult; none raises for a failed gate.
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

    @property
    def blocks(self) -> bool:
        return self.verdict is GateVerdict.BLOCK


def _block(gate: str, reason: str, **metrics) -> GateResult:
    return GateResult(gate, GateVerdict.BLOCK, reason, metrics)


def evaluate_drift(report: DriftReport | None) -> GateResult:
    """BLOCK on drift at error level or on columns that could not be judged; WARN on warnings."""
    gate = "drift"
    if report is None:
        return _block(gate, "no drift report: the partition was not compared to a reference")
    if not report.columns:
        return _block(gate, "the drift report covers no columns")
    worst = report.ranked()[0]
    metrics = {
        "worst_column": worst.column,
        "worst_method": worst.worst.method,
        "worst_statistic": worst.worst.statistic,
        "drifted_columns": len(report.drifted_columns),
    }
    unjudged = report.columns_with(DriftVerdict.INSUFFICIENT_DATA) + report.columns_with(
        DriftVerdict.INVALID
    )
    if report.drifted_columns:
        return GateResult(
            gate,
            GateVerdict.BLOCK,
            f"drift at error level in {report.drifted_columns}; worst {worst.column} "
            f"({worst.worst.method} {worst.worst.reason})",
            metrics,
        )
    if unjudged:
        return GateResult(
            gate, GateVerdict.BLOCK, f"cannot judge {unjudged}: {worst.worst.reason}", metrics
        )
    warned = report.columns_with(DriftVerdict.WARN)
    if warned:
        return GateResult(gate, GateVerdict.WARN, f"drift at warn level in {warned}", metrics)
    return GateResult(gate, GateVerdict.PASS, "every column within its warn level", metrics)


def evaluate_freshness(
    newest_partition_end: dt.datetime | None, now: dt.datetime, policy: FreshnessPolicy
) -> GateResult:
    """The newest partition must have ended within `policy.max_age_hours` of `now` (UTC)."""
    gate = "freshness"
    if newest_partition_end is None:
        return _block(gate, "no partition has been materialized yet")
    age_hours = (now - newest_partition_end).total_seconds() / 3600
    metrics = {"age_hours": round(age_hours, 2), "max_age_hours": policy.max_age_hours}
    if age_hours > policy.max_age_hours:
        return _block(
            gate,
            f"newest partition ended {age_hours:.1f} h ago; the policy allows "
            f"{policy.max_age_hours} h",
            **metrics,
        )
    return GateResult(
        gate, GateVerdict.PASS, f"newest partition ended {age_hours:.1f} h ago", metrics
    )


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed data-contract expectation and what was observed."""

    expectation: str
    column: str | None
    observed: str


def evaluate_contract(n_rows: int, failures: Sequence[ExpectationFailure]) -> GateResult:
    gate = "contract"
    if n_rows == 0:
        return _block(gate, "the partition is empty", rows=0)
    if failures:
        named = ", ".join(f"{f.expectation}({f.column})" for f in failures[:5])
        return _block(gate, f"{len(failures)} expectation(s) failed: {named}", rows=n_rows)
    return GateResult(gate, GateVerdict.PASS, f"{n_rows} rows meet the contract", {"rows": n_rows})


def evaluate_candidate(
    candidate: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    policy: RetrainPolicy,
) -> GateResult:
    """The candidate must not be worse than the champion by more than the policy's tolerance.

    With no champion yet (the first model), the candidate must reach `policy.min_metric`.
    """
    gate = "evaluation"
    metric = policy.metric
    score = (candidate or {}).get(metric)
    if score is None or not math.isfinite(score):
        return _block(gate, f"candidate has no finite {metric} on the holdout")
    if champion is None:
        metrics = {"candidate": score, "min_metric": policy.min_metric, "metric": metric}
        if score < policy.min_metric:
            return _block(
                gate, f"no champion; {metric} {score:.4f} < minimum {policy.min_metric}", **metrics
            )
        return GateResult(
            gate,
            GateVerdict.PASS,
            f"no champion; {metric} {score:.4f} >= minimum {policy.min_metric}",
            metrics,
        )
    best = champion.get(metric)
    if best is None or not math.isfinite(best):
        return _block(gate, f"champion has no finite {metric} on the holdout")
    delta = score - best
    metrics = {
        "candidate": score,
        "champion": best,
        "delta": delta,
        "tolerance": policy.evaluation_tolerance,
        "metric": metric,
    }
    summary = f"{metric} candidate {score:.4f} vs champion {best:.4f} (delta {delta:+.4f})"
    if delta < -policy.evaluation_tolerance:
        return _block(
            gate, f"{summary} is worse than the tolerance {policy.evaluation_tolerance}", **metrics
        )
    return GateResult(gate, GateVerdict.PASS, summary, metrics)
