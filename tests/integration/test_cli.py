"""The `driftgate` commands against a real MLflow registry and Dagster instance in a temp home."""

import functools

import pandas as pd
import pytest
from typer.testing import CliRunner

from orchestrator.adapters.audit_store import SqliteAuditLog
from orchestrator.adapters.home import HomeLayout
from orchestrator.adapters.mlflow_registry import MlflowModelRegistry
from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.cli import app
from orchestrator.core.audit import AuditAction
from orchestrator.core.registry import CHAMPION
from orchestrator.core.training import train_candidate
from orchestrator.demo.simulator import Landing, Scenario, simulate_day
from orchestrator.specs import load_spec
from tests.conftest import register_version

pytestmark = pytest.mark.integration
PASSING = {"gate.training_data_contract": "pass", "gate.evaluation": "pass"}


@functools.cache
def churn_model():
    """A churn pipeline trained on the demo's reference window: promotion scores it there."""
    spec = load_spec("churn")
    scenario = Scenario(start=spec.reference_dates[0])
    days = [simulate_day(scenario, d) for d in range(1, len(spec.reference_days) + 1)]
    frame = pd.concat([f.merge(labels, on="request_id") for f, labels in days])
    return train_candidate(frame, spec)


def register(layout: HomeLayout, **tags) -> str:
    registry = MlflowModelRegistry(layout.mlflow_tracking_uri, layout.mlflow_artifacts)
    reference = ",".join(d.isoformat() for d in load_spec("churn").reference_days)
    lineage = {
        "dagster_run_id": "r",
        "triggered_by": "sensor:retrain_churn_on_drift",
        "training_partitions": reference,
        **tags,
    }
    audit = SqliteAuditLog(layout.audit_db)
    return register_version(registry, audit, "churn", lineage, model_object=churn_model())


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def freeze_reference_rows(layout: HomeLayout) -> None:
    """The demo model's reference window as frozen feature partitions and landed labels: what
    the promotion job profiles as the new drift reference and scores as the performance one."""
    spec = load_spec("churn")
    store = PartitionStore.for_model(layout.data, spec)
    landing = Landing(layout.data, spec.source.features_path, spec.source.labels_path)
    scenario = Scenario(start=spec.reference_dates[0])
    for day in range(1, len(spec.reference_days) + 1):
        frame, _ = simulate_day(scenario, day)
        store.write_table("feature_table", frame, scenario.date(day).isoformat())
        landing.land(scenario, day, features=False, labels=True)


def test_approve_refuses_a_non_approver_with_the_reason(home):
    version = register(home, **PASSING)
    result = run(
        "approve", "churn", version, "--by", "mallory", "--reason", "x", "--home", str(home.root)
    )
    assert result.exit_code == 1
    assert "'mallory' is not an approver" in result.output
    events = SqliteAuditLog(home.audit_db).events("churn")
    assert [e.action for e in events[-1:]] == [AuditAction.APPROVAL_REFUSED]


def test_promote_refuses_without_approval_then_promotes_after_it(home):
    freeze_reference_rows(home)
    version = register(home, **PASSING)
    refused = run("promote", "churn", version, "--by", "ops", "--home", str(home.root))
    assert refused.exit_code == 1 and "it has no approval" in refused.output
    registry = MlflowModelRegistry(home.mlflow_tracking_uri, home.mlflow_artifacts)
    assert registry.get_alias("churn", CHAMPION) is None

    approved = run(
        "approve",
        "churn",
        version,
        "--by",
        "ml-lead",
        "--reason",
        "reviewed",
        "--home",
        str(home.root),
    )
    assert approved.exit_code == 0, approved.output
    promoted = run("promote", "churn", version, "--by", "ops", "--home", str(home.root))
    assert promoted.exit_code == 0, promoted.output
    assert registry.get_alias("churn", CHAMPION).version == version
    status = run("status", "churn", "--home", str(home.root))
    assert status.exit_code == 0 and f"champion   v{version}" in status.output
    assert (home.data / "churn" / "reference_profile.npz").exists()


def test_promote_exits_non_zero_when_the_new_reference_cannot_be_profiled(home):
    version = register(home, **PASSING)  # no frozen rows for its (default) reference window
    run("approve", "churn", version, "--by", "ml-lead", "--reason", "ok", "--home", str(home.root))
    result = run("promote", "churn", version, "--by", "ops", "--home", str(home.root))
    assert result.exit_code == 1 and "drift checks block until" in result.output
    assert "performance checks fail for lack of evidence" in result.output
    registry = MlflowModelRegistry(home.mlflow_tracking_uri, home.mlflow_artifacts)
    assert registry.get_alias("churn", CHAMPION).version == version  # the promotion stands


def test_promote_refuses_a_version_whose_gate_failed(home):
    version = register(home, **{**PASSING, "gate.evaluation": "block"})
    result = run("promote", "churn", version, "--home", str(home.root))
    assert result.exit_code == 1 and "gate 'evaluation' is block" in result.output


def test_bootstrap_trains_the_first_candidate_and_its_trigger_cannot_approve_it(home):
    from orchestrator.demo.simulator import Landing, Scenario
    from orchestrator.specs import load_spec

    spec = load_spec("churn")
    first, last = spec.reference_dates
    scenario = Scenario(start=first, days=20, drift_day=20, reference_days=14)
    landing = Landing(home.data, spec.source.features_path, spec.source.labels_path)
    for day in range(1, scenario.reference_days + 1):
        landing.land(scenario, day, features=True, labels=True)

    result = run("bootstrap", "churn", "--by", "ml-lead", "--home", str(home.root))
    assert result.exit_code == 0, result.output
    assert f"{last}  reference partition frozen, contract ok" in result.output
    assert "churn v1 registered; evaluation gate: no champion" in result.output
    registry = MlflowModelRegistry(home.mlflow_tracking_uri, home.mlflow_artifacts)
    version = registry.get_version("churn", "1")
    assert version.tags["trigger"] == "bootstrap" and version.tags["triggered_by"] == "ml-lead"
    assert len(version.training_partitions) == 14

    refused = run(
        "approve", "churn", "1", "--by", "ml-lead", "--reason", "x", "--home", str(home.root)
    )
    assert refused.exit_code == 1 and "triggered and trained this version" in refused.output
    assert (
        run(
            "approve",
            "churn",
            "1",
            "--by",
            "demo-approver",
            "--reason",
            "ok",
            "--home",
            str(home.root),
        ).exit_code
        == 0
    )


def test_bootstrap_without_landed_data_names_the_missing_day(home):
    result = run("bootstrap", "churn", "--by", "ml-lead", "--home", str(home.root))
    assert result.exit_code == 1
    assert "reference day 2026-01-01 is not usable" in result.output
