"""The demo scenario, shortened: the timeline facts hold on a real instance and registry."""

import datetime as dt

import dagster as dg
import pytest

from orchestrator.adapters.audit_store import SqliteAuditLog
from orchestrator.adapters.home import HomeLayout
from orchestrator.adapters.mlflow_registry import MlflowModelRegistry
from orchestrator.core.audit import AuditAction
from orchestrator.core.registry import CHAMPION
from orchestrator.demo.runner import DemoOptions, run_demo
from orchestrator.evidence import check_history, latest_per_partition
from orchestrator.naming import ModelNames

pytestmark = pytest.mark.e2e
START = dt.date(2026, 1, 1)  # the churn model's configured reference window starts here
DRIFT_DAY = 17


def date(day: int) -> str:
    return (START + dt.timedelta(days=day - 1)).isoformat()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = HomeLayout.resolve(str(tmp_path_factory.mktemp("demo-home")))
    with pytest.MonkeyPatch.context() as env:
        for name in ("DRIFTGATE_HOME", "DAGSTER_HOME"):
            env.setenv(name, "")
        timeline = run_demo(home, DemoOptions(days=24, drift_day=DRIFT_DAY, seed=11))
        with dg.DagsterInstance.get() as instance:
            yield home, timeline, instance


def test_drift_check_fails_only_on_drifted_days_until_the_new_champion(demo):
    home, timeline, instance = demo
    latest = latest_per_partition(check_history(instance, ModelNames("churn").drift_check))
    failed = sorted(p for p, e in latest.items() if e.blocks)
    promoted_on = timeline.of_kind("promoted")[-1][0]
    assert failed == [date(d) for d in range(DRIFT_DAY, 25) if date(d) < promoted_on]
    assert sorted(latest) == [date(d) for d in range(15, 25)]  # every monitored day judged
    assert all(latest[p].value("worst_column") for p in failed)


def test_exactly_one_retraining_and_cooldown_suppression_is_visible(demo):
    home, timeline, instance = demo
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name="retrain_churn", tags={"driftgate/trigger": "drift"})
    )
    assert len(runs) == 1
    assert runs[0].tags["dagster/run_key"] == f"retrain-churn-{date(DRIFT_DAY)}"
    assert any("cooldown" in text for _, kind, text in timeline.of_kind("sensor"))
    audit = SqliteAuditLog(home.audit_db).events("churn", [AuditAction.RETRAIN_SUPPRESSED])
    assert audit and "cooldown" in audit[0].evidence["reason"]


def test_new_champion_is_the_retrained_version_approved_by_the_demo_approver(demo):
    home, timeline, instance = demo
    registry = MlflowModelRegistry(home.mlflow_tracking_uri, home.mlflow_artifacts)
    champion = registry.get_alias("churn", CHAMPION)
    assert champion.version == "2"
    assert champion.approved_by == "demo-approver"
    assert champion.tags["replaced_version"] == "1"
    assert champion.tags["trigger"] == "drift"
    assert champion.gates == {"training_data_contract": "pass", "evaluation": "pass"}
    evaluation = check_history(instance, ModelNames("churn").evaluation_check)
    assert evaluation and all(e.passed for e in evaluation)


def test_audit_events_are_in_the_order_the_loop_runs(demo):
    home, _, _ = demo
    events = SqliteAuditLog(home.audit_db).events("churn")
    v2 = [e.action for e in events if e.version == "2"]
    assert v2 == [
        AuditAction.MODEL_REGISTERED,
        AuditAction.GATE_EVALUATED,
        AuditAction.APPROVAL_GRANTED,
        AuditAction.PROMOTION_STARTED,
        AuditAction.PROMOTED,
    ]
    order = [e.action for e in events]

    def first(action):
        return order.index(action)

    assert (
        first(AuditAction.DRIFT_BREACH)
        < first(AuditAction.RETRAIN_WAITING)
        < first(AuditAction.RETRAIN_REQUESTED)
        < first(AuditAction.RETRAIN_SUPPRESSED)
        < order.index(AuditAction.PROMOTED, first(AuditAction.RETRAIN_REQUESTED))
    )
    assert all(e.at.tzinfo is not None and e.actor for e in events)
    requested = events[first(AuditAction.RETRAIN_REQUESTED)]
    assert requested.evidence["onset"] == date(DRIFT_DAY)


def test_audit_live_names_the_champion_at_three_instants_of_the_demo(demo):
    import datetime as dt

    from orchestrator.audit_views import live_champion
    from orchestrator.specs import load_spec

    home = demo[0]
    events = SqliteAuditLog(home.audit_db).events("churn")
    registry = MlflowModelRegistry(home.mlflow_tracking_uri, home.mlflow_artifacts)
    moves = [e for e in events if e.action is AuditAction.PROMOTED]
    assert [m.version for m in moves] == ["1", "2"]
    second = dt.timedelta(microseconds=1)
    policy = load_spec("churn").approval
    before = live_champion("churn", registry, events, moves[0].at - second, policy)
    during = live_champion("churn", registry, events, moves[1].at - second, policy)
    after = live_champion("churn", registry, events, moves[1].at + second, policy)
    assert before is None
    assert during.tenure.version == "1" and after.tenure.version == "2"
    assert [a.actor for a in after.approvals] == ["demo-approver"]
    assert after.tenure.previous == "1" and after.version.training_partitions
    assert after.version.gates == {"training_data_contract": "pass", "evaluation": "pass"}


def test_the_promotion_job_verifies_the_audit_trail_asset(demo):
    _, _, instance = demo
    names = ModelNames("churn")
    checks = check_history(instance, names.audit_check)
    assert len(checks) == 2 and all(c.passed for c in checks)  # after v1 and after v2
    assert instance.get_latest_materialization_event(names.audit_trail) is not None
