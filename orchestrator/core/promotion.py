"""Approval and promotion decisions. They decide; adapters act on the decision."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from orchestrator.core.gates import GateVerdict
from orchestrator.core.registry import TAG_TRIGGERED_BY, ModelVersion
from orchestrator.core.spec import ApprovalPolicy

# A candidate has passed these gates before anyone may approve or promote it.
REQUIRED_GATES = ("training_data_contract", "evaluation")
_ACCEPTED = {GateVerdict.PASS.value, GateVerdict.WARN.value}


@dataclass(frozen=True)
class PromotionDecision:
    allowed: bool
    version: str
    replaces: str | None
    reasons: tuple[str, ...]

    def explain(self) -> str:
        return "; ".join(self.reasons)


def gate_problems(version: ModelVersion, required: Sequence[str] = REQUIRED_GATES) -> list[str]:
    """Every reason the version's gates do not allow it forward.

    Fails closed: a required gate without a result, or any gate whose recorded value is not
    exactly `pass` or `warn` (a typo, `Block`, `error`), is a problem.
    """
    gates = version.gates
    problems = [f"gate {g!r} has no recorded result" for g in required if g not in gates]
    problems += [f"gate {g!r} is {v}" for g, v in sorted(gates.items()) if v not in _ACCEPTED]
    return problems


def duty_problems(version: ModelVersion, approver: str, policy: ApprovalPolicy) -> list[str]:
    problems = []
    if approver not in policy.approvers:
        problems.append(f"{approver!r} is not an approver (approvers: {policy.approvers})")
    trigger = version.tags.get(TAG_TRIGGERED_BY, "unknown")
    if policy.separation_of_duties and trigger == "unknown":
        problems.append(
            "the version does not record who triggered it, so separation of duties "
            "cannot be checked (tag retraining runs with driftgate/triggered_by)"
        )
    elif policy.separation_of_duties and trigger == approver:
        problems.append(f"{approver!r} triggered this version and cannot also approve it")
    return problems


def approval_problems(version: ModelVersion, approver: str, policy: ApprovalPolicy) -> list[str]:
    problems = duty_problems(version, approver, policy)
    if version.approved_by:
        problems.append(f"version {version.version} is already approved by {version.approved_by}")
    return problems + gate_problems(version)


def decide_promotion(
    version: ModelVersion,
    champion: ModelVersion | None,
    policy: ApprovalPolicy,
    audited_approvers: Collection[str],
) -> PromotionDecision:
    """Promote only a version whose gates all passed and that an allowed approver approved.

    The approval tag alone is not evidence: anyone with MLflow access can set it. The approver
    it names must also appear in the audit log's granted approvals for this version
    (`audited_approvers`), and the policy is checked again as it stands now.
    """
    reasons = gate_problems(version)
    approver = version.approved_by
    if approver is None:
        reasons.append("it has no approval")
    else:
        reasons += [f"its approval: {p}" for p in duty_problems(version, approver, policy)]
        if approver not in audited_approvers:
            reasons.append(f"the approval by {approver!r} has no matching audit record")
    if champion is not None and champion.version == version.version:
        reasons.append(f"version {version.version} is already the champion")
    elif champion is not None and int(version.version) < int(champion.version):
        # Going back to an older version is a rollback, a deliberate act, never a side effect
        # of an approval that was overtaken by a newer champion.
        reasons.append(f"version {version.version} is older than champion {champion.version}")
    replaces = champion.version if champion else None
    if reasons:
        return PromotionDecision(False, version.version, replaces, tuple(reasons))
    return PromotionDecision(True, version.version, replaces, (f"approved by {approver}",))
