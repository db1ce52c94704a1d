"""The evidence bundle an auditor takes away: cards, lineage from a real Dagster instance,
approvals, the audit trail and a manifest that fingerprints them all."""

import csv
import hashlib
import json

import dagster as dg
import pytest

from orchestrator import evidence_bundle
from orchestrator.core.audit import AuditAction, AuditEvent, InMemoryAuditLog
from orchestrator.core.errors import DataError
from orchestrator.core.registry import CHAMPION, InMemoryModelRegistry
from orchestrator.evidence_bundle import asset_lineage, export_evidence
from tests.conftest import small_spec

pytestmark = pytest.mark.integration

GRAPH = {
    "toy/candidate_model": ["toy/training_dataset"],
    "toy/training_dataset": ["toy/feature_table"],
    "toy/feature_table": [],
}


@dg.asset(key=["toy", "training_dataset"])
def training_dataset() -> int:
    return 3


@dg.asset(key=["toy", "candidate_model"])
def candidate_model(training_dataset: int) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"mlflow_version": training_dataset, "roc_auc": 0.81})


@dg.asset(key=["other", "candidate_model"])
def other_model() -> int:
    return 1


def lineage_tags(run_id: str, partitions: str, data_hash: str) -> dict[str, str]:
    return {
        "dagster_run_id": run_id,
        "training_partitions": partitions,
        "training_data_hash": data_hash,
        "code_version": "git:abc123",
        "trigger": "drift",
        "triggered_by": "sensor:retrain_toy_on_drift",
    }


def record_version(registry, audit, run_id, partitions, data_hash, metric) -> str:
    """One trained version and the trail up to its approval request: registration and gates."""
    tags = lineage_tags(run_id, partitions, data_hash)
    tags |= {"gate.evaluation": "pass", "gate.data": "pass"}
    version = registry.log_model("toy", object(), metrics={"roc_auc": metric}, params={}, tags=tags)
    v = version.version
    audit.append(AuditEvent(AuditAction.MODEL_REGISTERED, "sensor:retrain", "toy", v, run_id))
    evidence = {
        "gate": "evaluation",
        "verdict": "pass",
        "reason": f"candidate roc_auc {metric} beats the champion",
        "threshold": {"tolerance": 0.01, "min_metric": 0.6},
    }
    audit.append(AuditEvent(AuditAction.GATE_EVALUATED, "check:toy", "toy", v, run_id, evidence))
    return v


def approve_and_promote(registry, audit, version, approver, reason, replaced) -> None:
    registry.set_tags("toy", version, {"approved_by": approver, "approval_reason": reason})
    audit.append(
        AuditEvent(AuditAction.APPROVAL_GRANTED, approver, "toy", version, None, {"reason": reason})
    )
    evidence = {"replaced_version": replaced}
    audit.append(AuditEvent(AuditAction.PROMOTION_STARTED, "sensor:promote", "toy", version, "p"))
    registry.set_alias("toy", CHAMPION, version)
    audit.append(AuditEvent(AuditAction.PROMOTED, "sensor:promote", "toy", version, "p", evidence))


@pytest.fixture
def history():
    """Two versions trained by real Dagster runs; v2 promoted over v1, then rolled back."""
    registry, audit = InMemoryModelRegistry(), InMemoryAuditLog()
    with dg.instance_for_test() as instance:
        runs = [
            dg.materialize([training_dataset, candidate_model], instance=instance).run_id
            for _ in range(2)
        ]
        v1 = record_version(registry, audit, runs[0], "2026-01-01,2026-01-02", "sha256:aaa", 0.7)
        approve_and_promote(registry, audit, v1, "alice", "first model, gates green", None)
        v2 = record_version(registry, audit, runs[1], "2026-01-03,2026-01-04", "sha256:bbb", 0.8)
        refused = {"problems": ["carol is not an approver"]}
        audit.append(AuditEvent(AuditAction.APPROVAL_REFUSED, "carol", "toy", v2, None, refused))
        approve_and_promote(registry, audit, v2, "bob", "beats v1 by 0.1 AUC", v1)
        audit.append(AuditEvent(AuditAction.DRIFT_BREACH, "check:other", "other"))
        rollback = {"replaced_version": v2, "reason": "latency SLA breached"}
        audit.append(AuditEvent(AuditAction.ROLLED_BACK, "oncall", "toy", v1, "rb", rollback))
        registry.set_alias("toy", CHAMPION, v1)
        yield registry, audit, instance, runs


def spec_with_description():
    return small_spec(description="Flags toy customers likely to churn <30 days & act early")


def read_manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_bundle_holds_cards_lineage_approvals_trail_and_a_manifest(history, tmp_path):
    registry, audit, instance, runs = history
    out = tmp_path / "bundle"
    manifest_path = export_evidence(spec_with_description(), registry, audit, instance, GRAPH, out)
    assert manifest_path == out / "manifest.json"
    manifest = read_manifest(out)
    expected = {
        "approvals.csv",
        "audit_log.jsonl",
        "lineage.json",
        "versions/v1.md",
        "versions/v1.html",
        "versions/v2.md",
        "versions/v2.html",
    }
    assert {f["path"] for f in manifest["files"]} == expected
    for entry in manifest["files"]:  # every fingerprint matches the file as written
        data = (out / entry["path"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["model"] == "toy"
    assert manifest["created_at"].endswith("+00:00")
    assert manifest["audit_chain_head"] == audit.events()[-1].hash
    assert not list(tmp_path.glob(".bundle.partial-*"))


def test_model_cards_name_lineage_gates_and_approvals(history, tmp_path):
    registry, audit, instance, runs = history
    export_evidence(spec_with_description(), registry, audit, instance, GRAPH, tmp_path / "b")
    v1_md = (tmp_path / "b/versions/v1.md").read_text()
    v2_md = (tmp_path / "b/versions/v2.md").read_text()
    v2_html = (tmp_path / "b/versions/v2.html").read_text()
    for text in ("churn <30 days & act early", "2026-01-01, 2026-01-02", "sha256:aaa", runs[0]):
        assert text in v1_md
    assert "alice" in v1_md and "first model, gates green" in v1_md
    assert "| evaluation | pass |" in v1_md and "| data | pass |" in v1_md
    assert '"tolerance": 0.01' in v1_md  # the threshold the gate applied
    assert "rolled_back" in v1_md and "latency SLA breached" in v1_md
    for text in ("bob", "beats v1 by 0.1 AUC", "sha256:bbb", "2026-01-03, 2026-01-04"):
        assert text in v2_md and text in v2_html
    assert "carol is not an approver" in v2_md  # refusals are evidence too
    assert "rolled_back" in v2_md  # the rollback that replaced v2 is in its history
    assert "churn &lt;30 days &amp; act early" in v2_html  # escaped, not raw HTML
    for section in ("Purpose", "Training data lineage", "Metrics", "Approvals", "Promotion"):
        assert f"<h2>{section}" in v2_html and f"## {section}" in v2_md


def test_lineage_comes_from_the_dagster_instance(history, tmp_path):
    registry, audit, instance, runs = history
    export_evidence(spec_with_description(), registry, audit, instance, GRAPH, tmp_path / "b")
    lineage = json.loads((tmp_path / "b/lineage.json").read_text())
    assert lineage["asset_graph"] == GRAPH
    by_version = {v["version"]: v for v in lineage["versions"]}
    run = by_version["1"]["run"]
    assert by_version["1"]["dagster_run_id"] == runs[0]
    assert run["status"] == "SUCCESS" and run["job_name"] == "__ephemeral_asset_job__"
    assert run["start_time"] and run["end_time"]
    materialized = {m["asset_key"]: m for m in run["materializations"]}
    assert set(materialized) == {"toy/training_dataset", "toy/candidate_model"}
    assert materialized["toy/candidate_model"]["metadata_keys"] == ["mlflow_version", "roc_auc"]
    assert by_version["2"]["run"]["materializations"]


def test_audit_trail_and_approvals_are_the_models_events_in_order(history, tmp_path):
    registry, audit, instance, _ = history
    export_evidence(spec_with_description(), registry, audit, instance, GRAPH, tmp_path / "b")
    lines = (tmp_path / "b/audit_log.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [e.id for e in audit.events("toy")]
    for record in records:  # the recipe in the manifest recomputes every stored hash
        body = {k: v for k, v in record.items() if k not in ("id", "hash")}
        canonical = json.dumps(body, sort_keys=True, default=str).encode()
        assert hashlib.sha256(canonical).hexdigest() == record["hash"]
    with (tmp_path / "b/approvals.csv").open(newline="") as f:
        approvals = list(csv.DictReader(f))
    assert [(a["action"], a["actor"], a["version"]) for a in approvals] == [
        ("approval_granted", "alice", "1"),
        ("approval_refused", "carol", "2"),
        ("approval_granted", "bob", "2"),
    ]
    assert approvals[1]["reason"] == "carol is not an approver"


def test_without_an_instance_lineage_says_so(history, tmp_path):
    registry, audit, _, _ = history
    export_evidence(small_spec(), registry, audit, None, GRAPH, tmp_path / "b")
    lineage = json.loads((tmp_path / "b/lineage.json").read_text())
    assert lineage["dagster_instance"] == "no Dagster instance"
    assert all(v["run"] is None for v in lineage["versions"])
    assert "No description in the model spec." in (tmp_path / "b/versions/v1.md").read_text()


def test_a_non_empty_directory_is_refused_and_left_alone(history, tmp_path):
    registry, audit, _, _ = history
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="taken"):
        export_evidence(small_spec(), registry, audit, None, GRAPH, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_empty_directory_is_filled(history, tmp_path):
    registry, audit, _, _ = history
    (tmp_path / "empty").mkdir()
    export_evidence(small_spec(), registry, audit, None, GRAPH, tmp_path / "empty")
    assert (tmp_path / "empty/manifest.json").exists()


def test_a_failure_midway_leaves_no_bundle(history, tmp_path, monkeypatch):
    registry, audit, _, _ = history

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(evidence_bundle, "_write_approvals", fail)
    with pytest.raises(OSError, match="disk full"):
        export_evidence(small_spec(), registry, audit, None, GRAPH, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor its staging directory


def test_asset_lineage_reads_the_model_assets_from_definitions():
    defs = dg.Definitions(assets=[training_dataset, candidate_model, other_model])
    assert asset_lineage(defs, "toy") == {
        "toy/candidate_model": ["toy/training_dataset"],
        "toy/training_dataset": [],
    }
