"""Approval and promotion decisions. They decide; adapters act on the decision."""

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.core.gates import GateVerdict
from orchestrator.core.registry import TAG_TRIGGERED_BY, ModelVersion
from orchestrator.core.spec import ApprovalPolicy

# A candidate has passed these gates before anyone may approve or promote it.
REQUIRED_GATES = ("training_data_contract", "evaluation")


@dataclass(frozen=True)
class PromotionDecision:
    allowed: bool
    version: str
    replaces: str | None
    reasons: tuple[str, ...]

    def explain(self) -> str:
        return "; ".join(self.reasons)


def gate_problems(version: ModelVersion, required: Sequence[str] = REQUIRED_GATES) -> list[str]:
    """Every reason the version's gates do not allow it forward (missing gates fail closed)."""
    gates = version.gates
    problems = [f"gate {g!r} has no recorded result" for g in required if g not in gates]
    problems += [
        f"gate {g!r} is {v}" for g, v in sorted(gates.items()) if v == GateVerdict.BLOCK.value
    ]
    return problems


def approval_problems(version: ModelVersion, approver: str, policy: ApprovalPolicy) -> list[str]:
    problems = []
    if approver not in policy.approvers:
        problems.append(f"{approver!r} is not an approver (approvers: {policy.approvers})")
    if policy.separation_of_duties and version.tags.get(TAG_TRIGGERED_BY) == approver:
        problems.append(f"{approver!r} triggered this version and cannot also approve it")
    if version.approved_by:
        problems.append(f"version {version.version} is already approved by {version.approved_by}")
    return problems + gate_problems(version)


def decide_promotion(
    version: ModelVersion, champion: ModelVersion | None, policy: ApprovalPolicy
) -> PromotionDecision:
    """Promote only a version whose gates all passed and that an allowed approver approved."""
    reasons = gate_problems(version)
    approver = version.approved_by
    if approver is None:
        reasons.append("it has no approval")
    elif approver not in policy.approvers:
        reasons.append(f"its approval by {approver!r} is not from an approver in the policy")
    if champion is not None and champion.version == version.version:
        reasons.append(f"version {version.version} is already the champion")
    replaces = champion.version if champion else None
    if reasons:
        return PromotionDecision(False, version.version, replaces, tuple(reasons))
    return PromotionDecision(True, version.version, replaces, (f"approved by {approver}",))
