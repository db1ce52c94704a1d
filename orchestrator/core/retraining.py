"""Whether a drift breach should retrain the model now, under the retrain policy's guards.

Guards run on the data clock (partition dates), not on the wall clock: a replay or a backfill of
thirty drifted days asks for the same retraining as living through them, and the decision is
reproducible from the evidence alone.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.core.spec import RetrainPolicy

# (first, last) partition dates -> labelled rows in that range
LabelCounter = Callable[[dt.date, dt.date], int]


class RetrainAction(StrEnum):
    RETRAIN = "retrain"
    NO_BREACH = "no_breach"
    COOLDOWN = "suppressed_cooldown"
    BUDGET = "suppressed_budget"
    WAIT_FOR_LABELS = "waiting_for_labels"


@dataclass(frozen=True)
class RetrainDecision:
    action: RetrainAction
    reason: str
    onset: dt.date | None = None  # first breached partition this decision is about
    as_of: dt.date | None = None  # newest breached partition: the training window ends here
    run_key: str | None = None

    @property
    def retrain(self) -> bool:
        return self.action is RetrainAction.RETRAIN


def retrain_run_key(model: str, onset: dt.date) -> str:
    """Stable per drift episode, so repeated ticks about the same episode dedupe."""
    return f"retrain-{model}-{onset.isoformat()}"


def should_retrain(
    model: str,
    breached: Sequence[dt.date],
    passed: Sequence[dt.date],
    previous_triggers: Sequence[dt.date],
    labelled_rows_since: LabelCounter,
    policy: RetrainPolicy,
    signal: str = "drift",
) -> RetrainDecision:
    """Decide on the current drift episode given earlier retrain triggers (their `as_of` days).

    `breached` and `passed` are partitions whose latest drift evaluation found drift at error
    level, or found none. The episode is the run of breached partitions after the newest passing
    one: once a partition passes again (say, against a newly promoted champion), old breaches no
    longer ask for anything. `signal` names the breach in the reasons ("drift", or
    "performance" when the episode is one of realized-quality breaches).
    `labelled_rows_since(onset, as_of)` counts labelled rows; a model retrained before any
    labelled drifted data exists would only relearn the old world.
    """
    last_pass = max(passed, default=None)
    episode = sorted(b for b in breached if last_pass is None or b > last_pass)
    if not episode:
        since = (
            f": latest evaluated partition {last_pass} is within thresholds" if last_pass else ""
        )
        return RetrainDecision(RetrainAction.NO_BREACH, f"no {signal} breach at error level{since}")
    latest = episode[-1]
    last_trigger = max(previous_triggers, default=None)
    if last_trigger is not None:
        cooldown_end = last_trigger + dt.timedelta(days=policy.cooldown_days)
        if latest < cooldown_end:
            return RetrainDecision(
                RetrainAction.COOLDOWN,
                f"{signal} on {latest} suppressed: retraining was triggered for {last_trigger}, "
                f"its {policy.cooldown_days}-day cooldown covers {signal} through "
                f"{cooldown_end - dt.timedelta(days=1)}",
                as_of=latest,
            )
    window_start = latest - dt.timedelta(days=30)
    recent = [t for t in previous_triggers if t > window_start]
    if len(recent) >= policy.budget_per_30_days:
        return RetrainDecision(
            RetrainAction.BUDGET,
            f"{signal} on {latest} suppressed: {len(recent)} retrainings in the 30 days before, "
            f"budget is {policy.budget_per_30_days}",
            as_of=latest,
        )
    fresh = [b for b in episode if last_trigger is None or b > last_trigger]
    if not fresh:
        return RetrainDecision(
            RetrainAction.COOLDOWN,
            f"{signal} up to {latest} already triggered the retraining for {last_trigger}",
            as_of=latest,
        )
    onset = fresh[0]
    labelled = labelled_rows_since(onset, latest)
    if labelled < policy.min_new_labelled_rows:
        return RetrainDecision(
            RetrainAction.WAIT_FOR_LABELS,
            f"{signal} since {onset}: {labelled} labelled rows since then, "
            f"{policy.min_new_labelled_rows} needed before retraining",
            onset=onset,
            as_of=latest,
        )
    return RetrainDecision(
        RetrainAction.RETRAIN,
        f"{signal} since {onset} (latest {latest}); {labelled} labelled rows since onset",
        onset=onset,
        as_of=latest,
        run_key=retrain_run_key(model, onset),
    )
