"""Approval and promotion decisions, with the in-memory registry and audit fakes."""

import pytest

from orchestrator.core.audit import AuditAction, InMemoryAuditLog
from orchestrator.core.errors import ApprovalRefused, PromotionRefused
from orchestrator.core.registry import CHAMPION, InMemoryModelRegistry
from orchestrator.governance import Governance

PASSING = {"gate.training_data_contract": "pass", "gate.evaluation": "pass"}


@pytest.fixture
def governance(spec) -> Governance:
    return Governance(spec, InMemoryModelRegistry(), InMemoryAuditLog())


def register(governance: Governance, **tags) -> str:
    lineage = {"dagster_run_id": "r1", "triggered_by": "sensor:retrain_toy_on_drift", **tags}
    return governance.registry.log_model(
        "toy", object(), metrics={}, params={}, tags=lineage
    ).version


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
    assert actions == [AuditAction.APPROVAL_GRANTED, AuditAction.PROMOTED] * 2


def test_non_approver_is_refused_and_audited(governance):
    version = register(governance, **PASSING)
    with pytest.raises(ApprovalRefused, match="'mallory' is not an approver"):
        governance.approve(version, "mallory", "")
    assert governance.registry.get_version("toy", version).approved_by is None
    assert governance.audit.events("toy")[-1].action is AuditAction.APPROVAL_REFUSED


def test_trigger_cannot_approve_its_own_version(governance):
    version = register(governance, **PASSING, triggered_by="alice")
    with pytest.raises(ApprovalRefused, match="triggered this version"):
        governance.approve(version, "alice", "")


def test_version_with_failed_or_missing_gate_cannot_be_approved(governance):
    failed = register(governance, **{**PASSING, "gate.evaluation": "block"})
    with pytest.raises(ApprovalRefused, match="gate 'evaluation' is block"):
        governance.approve(failed, "alice", "")
    missing = register(governance, **{"gate.evaluation": "pass"})
    with pytest.raises(ApprovalRefused, match="'training_data_contract' has no recorded result"):
        governance.approve(missing, "alice", "")


def test_promotion_without_approval_is_refused_and_champion_unchanged(governance):
    champion = register(governance, **PASSING)
    governance.approve(champion, "alice", "")
    governance.promote(champion, "sensor", None)
    unapproved = register(governance, **PASSING)
    with pytest.raises(PromotionRefused, match="it has no approval"):
        governance.promote(unapproved, "sensor", None)
    assert governance.registry.get_alias("toy", CHAMPION).version == champion
    assert governance.audit.events("toy")[-1].action is AuditAction.PROMOTION_REFUSED


def test_promotion_of_a_version_whose_gate_failed_after_approval_is_refused(governance):
    version = register(governance, **PASSING)
    governance.approve(version, "alice", "")
    governance.registry.set_tags("toy", version, {"gate.evaluation": "block"})
    with pytest.raises(PromotionRefused, match="gate 'evaluation' is block"):
        governance.promote(version, "sensor", None)
    assert governance.registry.get_alias("toy", CHAMPION) is None


def test_awaiting_approval_lists_gate_passing_unapproved_versions(governance):
    passing = register(governance, **PASSING)
    register(governance, **{**PASSING, "gate.evaluation": "block"})
    assert [v.version for v in governance.awaiting_approval()] == [passing]


def test_an_overtaken_approval_never_demotes_a_newer_champion(governance):
    older = register(governance, **PASSING)
    governance.approve(older, "alice", "")
    newer = register(governance, **PASSING)
    governance.approve(newer, "bob", "")
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
    with pytest.raises(PromotionRefused, match="no matching audit record"):
        governance.promote(version, "sensor", None)
    assert governance.registry.get_alias("toy", CHAMPION) is None


def test_separation_of_duties_is_checked_again_at_promotion(governance):
    version = register(governance, **PASSING, triggered_by="bob")
    governance.approve(version, "alice", "")
    governance.registry.set_tags("toy", version, {"approved_by": "bob"})
    assert "triggered this version" in governance.decide(version).explain()
