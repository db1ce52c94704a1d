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


def latest_failures(instance, key) -> dict[str, str]:
    """partition -> 'warn' or 'error' for the latest evaluation of each failing partition."""
    latest = latest_per_partition(check_history(instance, key))
    return {p: ("error" if e.blocks else "warn") for p, e in latest.items() if not e.passed}


def test_sla_fails_on_the_slow_day_and_the_error_burst_only(demo):
    _, _, instance = demo
    failures = latest_failures(instance, ModelNames("churn").sla_check)
    # the scenario: a slow day two days after the reference window, errors two days later
    assert {p for p, level in failures.items() if level == "error"} == {date(16), date(18)}
    slow = latest_per_partition(check_history(instance, ModelNames("churn").sla_check))
    assert "latency_p95_ms" in slow[date(16)].reason_text
    assert "error_rate" in slow[date(18)].reason_text


def test_realized_quality_breaches_on_drifted_days_served_by_the_old_champion(demo):
    home, timeline, instance = demo
    names = ModelNames("churn")
    latest = latest_per_partition(check_history(instance, names.realized_check))
    breached = sorted(p for p, e in latest.items() if e.blocks and e.value("performance_breach"))
    promoted_on = timeline.of_kind("promoted")[-1][0]
    # labels arrive two days late: days up to 22 are measured by the end (day 24)
    assert breached == [date(d) for d in range(DRIFT_DAY, 23) if date(d) < promoted_on]
    assert all(not latest[date(d)].blocks for d in (15, 16))  # before the drift: no alarm
    audit = SqliteAuditLog(home.audit_db).events("churn", [AuditAction.PERFORMANCE_BREACH])
    assert {e.evidence["partition"] for e in audit} == set(breached)
    estimated = latest_per_partition(check_history(instance, names.estimated_check))
    assert sorted(estimated) == [date(d) for d in range(15, 25)]


def test_late_duplicate_and_orphan_labels_are_counted(demo):
    _, _, instance = demo
    labels = {
        record.partition_key: {
            k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()
        }
        for record in instance.fetch_materializations(ModelNames("churn").labels, limit=100).records
    }
    # a fifth of day 15's labels arrive on day 21, after day 15 was measured; a tenth of
    # day 16's are sent again that day; every delivery carries three unknown request ids
    assert labels[date(21)]["late"] == 300 + 150
    assert labels[date(21)]["duplicates"] == 150
    assert all(m["orphans"] == 3 for p, m in labels.items() if m["received"])
    realized = instance.get_latest_materialization_event(ModelNames("churn").realized_performance)
    assert realized is not None


def test_no_e_mail_or_raw_customer_id_is_stored_anywhere_under_the_home(demo):
    import re

    import pyarrow.parquet as pq

    home, _, _ = demo
    leaks = re.compile(rb"@example\.com|customer-\d{5}")
    files = [p for p in home.root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" and "telemetry" in p.parts for p in files)
    for path in files:
        assert not leaks.search(path.read_bytes()), path
        if path.suffix == ".parquet":  # compressed pages: scan the decoded values too
            assert not leaks.search(str(pq.read_table(path).to_pylist()).encode()), path
