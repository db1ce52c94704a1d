"""Approval and promotion decisions, with the in-memory registry and audit fakes."""

import datetime as dt
from dataclasses import replace

import pytest

from orchestrator.core.audit import AuditAction, AuditEvent, InMemoryAuditLog, gate_event
from orchestrator.core.errors import ApprovalRefused, PromotionRefused
from orchestrator.core.gates import GateResult, GateVerdict
from orchestrator.core.registry import CHAMPION, InMemoryModelRegistry
from orchestrator.governance import Governance
from tests.conftest import register_version, small_spec

PASSING = {"gate.training_data_contract": "pass", "gate.evaluation": "pass"}


@pytest.fixture
def governance(spec) -> Governance:
    return Governance(spec, InMemoryModelRegistry(), InMemoryAuditLog())


def register(governance: Governance, **tags) -> str:
    lineage = {"dagster_run_id": "r1", "triggered_by": "sensor:retrain_toy_on_drift", **tags}
    return register_version(governance.registry, governance.audit, "toy", lineage)


def test_approve_then_promote_moves_champion_and_records_replaced(governance):
    first = register(governance, **PASSING)
    governance.approve(first, "alice", "looks good")
    governance.promote(first, "sensor", "run-1")
    second = register(governance, **PASSING)
    governance.approve(second, "bob", "beats v1")
    decision = governance.promote(second, "sensor", "run-2")
    assert decision.replaces == first
    assert governance.registry.get_alias("toy", CHAMPION).version == second
    assert governance.registry.get_version("toy", second).tags["replaced_version"] == first
    actions = [e.action for e in governance.audit.events("toy")]
    # Every move of the alias is announced first and completed after: crash-safe.
    assert actions == 2 * [
        AuditAction.MODEL_REGISTERED,
        AuditAction.APPROVAL_GRANTED,
        AuditAction.PROMOTION_STARTED,
        AuditAction.PROMOTED,
    ]


def test_non_approver_is_refused_and_audited(governance):
    version = register(governance, **PASSING)
    with pytest.raises(ApprovalRefused, match="'mallory' is not an approver"):
        governance.approve(version, "mallory", "")
    assert governance.registry.get_version("toy", version).approved_by is None
    assert governance.audit.events("toy")[-1].action is AuditAction.APPROVAL_REFUSED


def test_trigger_cannot_approve_its_own_version(governance):
    version = register(governance, **PASSING, triggered_by="alice")
    with pytest.raises(ApprovalRefused, match="triggered and trained this version"):
        governance.approve(version, "alice", "ok")


def test_version_with_failed_or_missing_gate_cannot_be_approved(governance):
    failed = register(governance, **{**PASSING, "gate.evaluation": "block"})
    with pytest.raises(ApprovalRefused, match="gate 'evaluation' is block"):
        governance.approve(failed, "alice", "ok")
    missing = register(governance, **{"gate.evaluation": "pass"})
    with pytest.raises(ApprovalRefused, match="'training_data_contract' has no audited result"):
        governance.approve(missing, "alice", "ok")


def test_promotion_without_approval_is_refused_and_champion_unchanged(governance):
    champion = register(governance, **PASSING)
    governance.approve(champion, "alice", "ok")
    governance.promote(champion, "sensor", None)
    unapproved = register(governance, **PASSING)
    with pytest.raises(PromotionRefused, match="it has no approval"):
        governance.promote(unapproved, "sensor", None)
    assert governance.registry.get_alias("toy", CHAMPION).version == champion
    assert governance.audit.events("toy")[-1].action is AuditAction.PROMOTION_REFUSED


def test_promotion_of_a_version_whose_gate_failed_after_approval_is_refused(governance):
    version = register(governance, **PASSING)
    governance.approve(version, "alice", "ok")
    governance.registry.set_tags("toy", version, {"gate.evaluation": "block"})
    with pytest.raises(PromotionRefused, match="tag gate.evaluation says 'block'"):
        governance.promote(version, "sensor", None)
    assert governance.registry.get_alias("toy", CHAMPION) is None


def test_awaiting_approval_lists_gate_passing_unapproved_versions(governance):
    passing = register(governance, **PASSING)
    register(governance, **{**PASSING, "gate.evaluation": "block"})
    assert [v.version for v in governance.awaiting_approval()] == [passing]


def test_an_overtaken_approval_never_demotes_a_newer_champion(governance):
    older = register(governance, **PASSING)
    governance.approve(older, "alice", "ok")
    newer = register(governance, **PASSING)
    governance.approve(newer, "bob", "ok")
    governance.promote(newer, "sensor", None)
    with pytest.raises(PromotionRefused, match="older than champion"):
        governance.promote(older, "sensor", None)
    assert governance.registry.get_alias("toy", CHAMPION).version == newer


@pytest.mark.parametrize("value", ["Block", "error", "passed", ""])
def test_any_gate_value_other_than_pass_or_warn_refuses(governance, value):
    version = register(governance, **{**PASSING, "gate.evaluation": value})
    governance.registry.set_tags("toy", version, {"approved_by": "alice"})
    decision = governance.decide(version)
    assert not decision.allowed and f"gate 'evaluation' is {value}" in decision.explain()


def test_hand_set_approval_tag_without_audit_record_never_promotes(governance):
    version = register(governance, **PASSING)
    governance.registry.set_tags("toy", version, {"approved_by": "alice"})
    with pytest.raises(PromotionRefused, match="without an audited approval"):
        governance.promote(version, "sensor", None)
    assert governance.registry.get_alias("toy", CHAMPION) is None


def test_separation_of_duties_uses_the_audited_trigger_not_the_tag(governance):
    version = register(governance, **PASSING, triggered_by="alice")
    governance.registry.set_tags("toy", version, {"triggered_by": "carol"})  # edited in MLflow
    with pytest.raises(ApprovalRefused, match="'alice' triggered and trained this version"):
        governance.approve(version, "alice", "mine, but the tag says otherwise")
    other = register(governance, **PASSING, triggered_by="bob")
    governance.approve(other, "alice", "ok")
    governance.registry.set_tags("toy", other, {"triggered_by": "alice"})
    assert "tag triggered_by says 'alice' but the audit log says 'bob'" in (
        governance.decide(other).explain()
    )


@pytest.fixture
def quorum() -> Governance:
    approval = {
        "approvers": ["alice", "group:risk"],
        "groups": {"risk": ["carol", "dave"]},
        "required_approvals": 2,
    }
    return Governance(small_spec(approval=approval), InMemoryModelRegistry(), InMemoryAuditLog())


def test_a_quorum_of_approvers_from_names_and_groups_is_needed(quorum):
    version = register(quorum, **PASSING)
    first = quorum.approve(version, "carol", "risk ok")
    assert first.tags["approval_state"] == "pending (1 of 2)" and not first.approved_by
    with pytest.raises(PromotionRefused, match="1 of 2 required approvals"):
        quorum.promote(version, "sensor", None)
    with pytest.raises(ApprovalRefused, match="'carol' has already approved"):
        quorum.approve(version, "carol", "again")
    second = quorum.approve(version, "alice", "metrics ok")
    assert second.tags["approval_state"] == "approved" and second.approved_by == "carol,alice"
    assert quorum.promote(version, "sensor", None).allowed


def test_a_rejection_stops_the_version_and_shows_in_mlflow(quorum):
    version = register(quorum, **PASSING)
    quorum.approve(version, "alice", "fine")
    rejected = quorum.reject(version, "dave", "unexplained lift in one region")
    assert rejected.tags["approval_state"] == "rejected" and rejected.tags["rejected_by"] == "dave"
    with pytest.raises(ApprovalRefused, match="was rejected by dave"):
        quorum.approve(version, "carol", "ok")
    with pytest.raises(PromotionRefused, match="rejected by dave: unexplained lift"):
        quorum.promote(version, "sensor", None)
    with pytest.raises(ApprovalRefused, match="'mallory' is not an approver"):
        quorum.reject(version, "mallory", "no")
    assert quorum.audit.events("toy")[-1].action is AuditAction.APPROVAL_REFUSED


def test_an_approval_lapses_when_a_gate_fails_on_re_evaluation(governance):
    version = register(governance, **PASSING)
    governance.approve(version, "alice", "ok")
    failed = GateResult("evaluation", GateVerdict.BLOCK, "worse than the champion today")
    governance.audit.append(gate_event("toy", "check", failed, "run-9", version=version))
    decision = governance.decide(version)
    assert not decision.allowed and "lapsed after a failed gate: alice" in decision.explain()
    assert governance.state(version).label == "lapsed"


def test_rollback_restores_the_previous_champion_and_is_audited(governance):
    first, second = (register(governance, **PASSING) for _ in range(2))
    for version, approver in ((first, "alice"), (second, "bob")):
        governance.approve(version, approver, "ok")
        governance.promote(version, "sensor", None)
    with pytest.raises(PromotionRefused, match="'mallory' is not an approver"):
        governance.rollback("mallory", "bad")
    assert governance.rollback("alice", "v2 misbehaves in production") == first
    assert governance.registry.get_alias("toy", CHAMPION).version == first
    last = governance.audit.events("toy")[-1]
    assert last.action is AuditAction.ROLLED_BACK and last.evidence["replaced_version"] == second
    with pytest.raises(PromotionRefused, match="never served as champion"):
        governance.rollback("alice", "why not", to=register(governance, **PASSING))


def test_an_interrupted_move_blocks_promotion_until_recovered(governance):
    version = register(governance, **PASSING)
    governance.approve(version, "alice", "ok")
    intent = AuditEvent(
        AuditAction.PROMOTION_STARTED,
        "sensor",
        "toy",
        version,
        evidence={"kind": "promoted", "replaced_version": None},
    )
    governance.audit.append(intent)  # the process died here, before moving the alias
    assert "interrupted move of champion" in governance.decide(version).explain()
    closed = governance.recover("ops", older_than=dt.timedelta(0))
    assert [e.action for e in closed] == [AuditAction.PROMOTION_ABORTED]
    assert governance.registry.get_alias("toy", CHAMPION) is None
    governance.promote(version, "sensor", None)  # now it may go ahead

    second = register(governance, **PASSING)
    governance.approve(second, "bob", "ok")
    governance.audit.append(replace(intent, version=second))
    governance.registry.set_alias("toy", CHAMPION, second)  # moved, then died
    assert [e.action for e in governance.recover("ops", older_than=dt.timedelta(0))] == [
        AuditAction.PROMOTED
    ]


def test_two_rollbacks_never_return_to_a_version_rolled_back_from(governance):
    versions = [register(governance, **PASSING) for _ in range(3)]
    for version, approver in zip(versions, ("alice", "bob", "alice"), strict=True):
        governance.approve(version, approver, "ok")
        governance.promote(version, "sensor", None)
    assert governance.rollback("alice", "v3 regressed") == versions[1]
    assert governance.rollback("bob", "v2 regressed too") == versions[0]
    with pytest.raises(PromotionRefused, match="no earlier champion"):
        governance.rollback("alice", "nothing left")


def test_a_lapse_is_recorded_once_with_the_approvers_it_voids(governance):
    version = register(governance, **PASSING)
    governance.approve(version, "alice", "ok")
    failed = GateResult("evaluation", GateVerdict.BLOCK, "worse today")
    for _ in range(2):
        governance.audit.append(gate_event("toy", "check", failed, "run-9", version=version))
        governance.lapse_on_failure(version, failed, "run-9")
    lapses = governance.audit.events("toy", [AuditAction.APPROVAL_LAPSED])
    assert [e.evidence["lapsed"] for e in lapses] == [["alice"]]
    assert governance.registry.get_version("toy", version).tags["approval_state"] == "lapsed"


def test_a_version_approved_under_an_earlier_quorum_is_not_reported_as_forged(governance):
    from orchestrator.audit_views import verify_findings

    version = register(governance, **PASSING)
    governance.approve(version, "alice", "ok")
    stricter = small_spec(
        approval={"approvers": ["alice", "bob"], "required_approvals": 2}
    ).approval
    events = governance.audit.events()
    registry = governance.registry
    findings = verify_findings(events, {}, registry.list_versions("toy"), {"toy": stricter})
    assert findings == []
    registry.set_tags("toy", version, {"approved_by": "alice,mallory"})
    findings = verify_findings(events, {}, registry.list_versions("toy"), {"toy": stricter})
    assert [f.kind for f in findings] == ["forged_approval"] and "mallory" in findings[0].detail
