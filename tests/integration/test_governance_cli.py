"""Reject, rollback, verify, recover: the governance commands against a real MLflow registry,
a real SQLite audit store, and a process killed in the middle of a promotion."""

import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from orchestrator.adapters.audit_store import SqliteAuditLog
from orchestrator.adapters.mlflow_registry import MlflowModelRegistry
from orchestrator.core.audit import AuditAction
from orchestrator.core.registry import CHAMPION
from tests.integration.test_cli import PASSING, freeze_reference_rows, register, run

pytestmark = pytest.mark.integration


def registry(layout) -> MlflowModelRegistry:
    return MlflowModelRegistry(layout.mlflow_tracking_uri, layout.mlflow_artifacts)


def approve_and_promote(layout, version: str, approver: str) -> None:
    root = str(layout.root)
    approved = run("approve", "churn", version, "--by", approver, "--reason", "ok", "--home", root)
    assert approved.exit_code == 0, approved.output
    promoted = run("promote", "churn", version, "--by", "ops", "--home", root)
    assert promoted.exit_code == 0, promoted.output


def test_reject_then_rollback_restores_the_previous_champion(home):
    freeze_reference_rows(home)
    root = str(home.root)
    first, second = register(home, **PASSING), register(home, **PASSING)
    approve_and_promote(home, first, "ml-lead")
    approve_and_promote(home, second, "demo-approver")
    third = register(home, **PASSING)
    rejected = run("reject", "churn", third, "--by", "ml-lead", "--reason", "leaks", "--home", root)
    assert rejected.exit_code == 0, rejected.output
    assert registry(home).get_version("churn", third).tags["approval_state"] == "rejected"

    refused = run("rollback", "churn", "--by", "intruder", "--reason", "x", "--home", root)
    assert refused.exit_code == 1 and "'intruder' is not an approver" in refused.output
    rolled = run("rollback", "churn", "--by", "ml-lead", "--reason", "v2 regressed", "--home", root)
    assert rolled.exit_code == 0, rolled.output
    assert registry(home).get_alias("churn", CHAMPION).version == first
    last = SqliteAuditLog(home.audit_db).events("churn")[-1]
    assert (last.action, last.actor, last.evidence["reason"]) == (
        AuditAction.ROLLED_BACK,
        "ml-lead",
        "v2 regressed",
    )
    assert run("audit", "verify", "--home", root).exit_code == 0


KILL_BEFORE_ALIAS_MOVE = textwrap.dedent(
    """
    import os, signal, sys
    from orchestrator.adapters.mlflow_registry import MlflowModelRegistry
    from orchestrator.cli import _governance, _open_home

    def die(*args, **kwargs):  # the process is killed after the intent, before the alias moves
        os.kill(os.getpid(), signal.SIGKILL)

    MlflowModelRegistry.set_alias = die
    _governance("churn", _open_home(sys.argv[1])).promote(sys.argv[2], "sensor", None)
    """
)


def test_a_process_killed_between_intent_and_alias_move_leaves_a_state_verify_reports(home):
    root = str(home.root)
    version = register(home, **PASSING)
    approved = run("approve", "churn", version, "--by", "ml-lead", "--reason", "ok", "--home", root)
    assert approved.exit_code == 0
    child = subprocess.run(
        [sys.executable, "-c", KILL_BEFORE_ALIAS_MOVE, root, version], capture_output=True
    )
    assert child.returncode == -signal.SIGKILL
    assert registry(home).get_alias("churn", CHAMPION) is None  # the old champion: none

    verify = run("audit", "verify", "--home", root)
    assert verify.exit_code == 1
    assert f"move of champion to v{version}" in verify.output
    assert "the alias did not move" in verify.output and "audit recover churn" in verify.output
    blocked = run("promote", "churn", version, "--by", "ops", "--home", root)
    assert blocked.exit_code == 1 and "interrupted move of champion" in blocked.output

    recovered = run("audit", "recover", "churn", "--by", "ops", "--now", "--home", root)
    assert recovered.exit_code == 0 and "promotion_aborted" in recovered.output
    assert run("audit", "verify", "--home", root).exit_code == 0


def test_editing_one_stored_event_makes_verify_fail_and_name_it(home):
    root = str(home.root)
    version = register(home, **PASSING)
    run("approve", "churn", version, "--by", "ml-lead", "--reason", "fine", "--home", root)
    run("reject", "churn", version, "--by", "demo-approver", "--reason", "no", "--home", root)
    events = SqliteAuditLog(home.audit_db).events()
    target = next(e for e in events if e.action is AuditAction.APPROVAL_GRANTED)
    with sqlite3.connect(home.audit_db) as conn:  # an attacker with write access to the file
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("UPDATE audit_events SET actor = 'ceo' WHERE id = ?", (target.id,))
    verify = run("audit", "verify", "--home", root)
    assert verify.exit_code == 1
    assert "edited" in verify.output and str(target.id) in verify.output


def test_audit_live_and_export_answer_for_the_champion(home, tmp_path):
    freeze_reference_rows(home)
    root = str(home.root)
    version = register(home, **PASSING, training_partitions="2026-01-01,2026-01-02")
    before = "2000-01-01T00:00Z"
    approve_and_promote(home, version, "ml-lead")
    live = run("audit", "live", "churn", "--at", "2999-01-01T00:00Z", "--home", root)
    assert live.exit_code == 0, live.output
    assert f"champion: v{version}" in live.output and "approved by ml-lead" in live.output
    assert "2026-01-01..2026-01-02 (2 days)" in live.output
    none = run("audit", "live", "churn", "--at", before, "--home", root)
    assert none.exit_code == 1 and "had no champion" in none.output

    out = tmp_path / "bundle"
    exported = run("audit", "export", "churn", "--out", str(out), "--home", root)
    assert exported.exit_code == 0, exported.output
    assert (out / "manifest.json").exists() and (out / "versions" / f"v{version}.html").exists()
    again = run("audit", "export", "churn", "--out", str(out), "--home", root)
    assert again.exit_code == 1 and str(out) in again.output


def test_a_hand_set_approval_tag_is_reported_by_verify_and_never_promotes(home):
    root = str(home.root)
    version = register(home, **PASSING)
    registry(home).set_tags("churn", version, {"approved_by": "ml-lead"})  # in the MLflow UI
    verify = run("audit", "verify", "--home", root)
    assert verify.exit_code == 1 and "forged_approval" in verify.output
    promoted = run("promote", "churn", version, "--by", "ops", "--home", root)
    assert promoted.exit_code == 1 and "without an audited approval" in promoted.output
    assert registry(home).get_alias("churn", CHAMPION) is None


def test_deleting_the_newest_events_is_caught_and_blocks_promotion(home):
    root = str(home.root)
    version = register(home, **PASSING)
    run("approve", "churn", version, "--by", "ml-lead", "--reason", "ok", "--home", root)
    run("reject", "churn", version, "--by", "demo-approver", "--reason", "no", "--home", root)
    with sqlite3.connect(home.audit_db) as conn:  # erase the rejection, newest event
        conn.execute("DROP TRIGGER audit_events_no_delete")
        conn.execute("DELETE FROM audit_events WHERE id = (SELECT MAX(id) FROM audit_events)")
    verify = run("audit", "verify", "--home", root)
    assert verify.exit_code == 1 and "newest event(s) seq" in verify.output
    promoted = run("promote", "churn", version, "--by", "ops", "--home", root)
    assert promoted.exit_code == 1 and "fails verification" in promoted.output
    assert registry(home).get_alias("churn", CHAMPION) is None


def test_an_audit_store_from_before_sequence_numbers_is_refused_clearly(tmp_path):
    from orchestrator.core.errors import ConfigError

    path = tmp_path / "audit.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE audit_events (id INTEGER PRIMARY KEY, hash TEXT)")
    with pytest.raises(ConfigError, match="predates sealed sequence numbers"):
        SqliteAuditLog(path)
