"""The retrain guards: episode, cooldown, budget, labels, and a stable run_key."""

import datetime as dt

from orchestrator.core.retraining import RetrainAction, should_retrain
from orchestrator.core.spec import RetrainPolicy

D = dt.date(2026, 1, 1)
POLICY = RetrainPolicy(cooldown_days=7, budget_per_30_days=2, min_new_labelled_rows=1000)


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def plenty(first, last) -> int:
    return 5000


def decide(breached, passed=(), triggers=(), labels=plenty, policy=POLICY):
    return should_retrain("churn", breached, passed, triggers, labels, policy)


def test_no_breach():
    assert decide([], passed=[day(1)]).action is RetrainAction.NO_BREACH


def test_breach_retrains_with_run_key_stable_across_ticks():
    first = decide([day(5), day(6)], passed=[day(4)])
    again = decide([day(5), day(6), day(7)], passed=[day(4)])
    assert first.action is RetrainAction.RETRAIN
    assert first.run_key == again.run_key == "retrain-churn-2026-01-06"
    assert (first.onset, first.as_of) == (day(5), day(6))


def test_cooldown_suppresses_and_says_until_when():
    decision = decide([day(5), day(6)], triggers=[day(3)])
    assert decision.action is RetrainAction.COOLDOWN
    assert "covers drift through 2026-01-10" in decision.reason


def test_after_cooldown_a_new_episode_retrains_from_its_own_onset():
    decision = decide([day(12), day(13)], passed=[day(11)], triggers=[day(3)])
    assert decision.action is RetrainAction.RETRAIN and decision.onset == day(12)


def test_a_passing_partition_ends_the_episode():
    assert decide([day(5), day(6)], passed=[day(7)]).action is RetrainAction.NO_BREACH


def test_budget():
    decision = decide([day(29)], triggers=[day(5), day(15)])
    assert decision.action is RetrainAction.BUDGET


def test_waits_for_labelled_data_since_onset():
    seen = {}

    def counter(first, last):
        seen["range"] = (first, last)
        return 200

    decision = decide([day(5), day(6)], passed=[day(4)], labels=counter)
    assert decision.action is RetrainAction.WAIT_FOR_LABELS
    assert seen["range"] == (day(5), day(6))
    assert "200 labelled rows" in decision.reason


def test_zero_cooldown_does_not_retrain_twice_for_the_same_days():
    policy = RetrainPolicy(cooldown_days=0, min_new_labelled_rows=0)
    decision = decide([day(5), day(6)], triggers=[day(6)], policy=policy)
    assert decision.action is RetrainAction.COOLDOWN
    assert "already triggered" in decision.reason
    later = decide([day(5), day(6), day(7)], triggers=[day(6)], policy=policy)
    assert later.action is RetrainAction.RETRAIN and later.onset == day(7)


def test_cooldown_boundary_is_exclusive():
    assert decide([day(9)], triggers=[day(3)]).action is RetrainAction.COOLDOWN
    assert decide([day(10)], triggers=[day(3)]).action is RetrainAction.RETRAIN


def test_a_performance_episode_is_named_as_such_in_every_reason():
    quiet = should_retrain("churn", [], [day(1)], [], plenty, POLICY, signal="performance")
    cooling = should_retrain("churn", [day(5)], [], [day(3)], plenty, POLICY, signal="performance")
    assert quiet.reason.startswith("no performance breach")
    assert cooling.reason.startswith("performance on 2026-01-06 suppressed")
    assert "drift" not in quiet.reason + cooling.reason
