"""Approval and promotion decisions. They decide; adapters act on the decision.

The audit log is the evidence: an approval counts only if an audited APPROVAL_GRANTED event
records it, so a tag set by hand in the MLflow UI never promotes anything. Tags mirror the
state for people who look at MLflow.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.core.audit import AuditAction, AuditEvent
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


@dataclass(frozen=True)
class ApprovalState:
    """What the audit log says about one version's approvals."""

    approvers: tuple[str, ...]  # distinct people whose approval still counts, in order
    lapsed: tuple[str, ...]  # approvals made before a gate of the version failed again
    rejected_by: str | None
    rejection_reason: str | None
    required: int
    trigger: str | None = None  # who had it trained, as audited at registration
    gates: Mapping[str, str] = field(default_factory=dict)  # latest audited verdict per gate

    @property
    def approved(self) -> bool:
        return self.rejected_by is None and len(self.approvers) >= self.required

    @property
    def label(self) -> str:
        """The `approval_state` tag: approved, rejected, lapsed or pending (k of n)."""
        if self.rejected_by is not None:
            return "rejected"
        if self.approved:
            return "approved"
        if self.lapsed and not self.approvers:
            return "lapsed"
        return f"pending ({len(self.approvers)} of {self.required})"


def approval_state(
    version: str, events: Sequence[AuditEvent], policy: ApprovalPolicy
) -> ApprovalState:
    """Approvals, lapses, rejection, trigger and gate verdicts of `version`, from the model's
    audit events (in order): the evidence promotion trusts, whatever the tags say."""
    mine = [e for e in events if e.version == version]
    failed = [e.id or 0 for e in mine if _is_failure(e)]
    last_failure = max(failed, default=0)
    granted = [e for e in mine if e.action is AuditAction.APPROVAL_GRANTED]
    rejection = next((e for e in mine if e.action is AuditAction.APPROVAL_REJECTED), None)
    registered = next((e for e in mine if e.action is AuditAction.MODEL_REGISTERED), None)
    return ApprovalState(
        tuple(dict.fromkeys(e.actor for e in granted if (e.id or 0) > last_failure)),
        tuple(dict.fromkeys(e.actor for e in granted if (e.id or 0) <= last_failure)),
        rejection.actor if rejection else None,
        str(rejection.evidence.get("reason", "")) if rejection else None,
        policy.required_approvals,
        registered.evidence.get("triggered_by", registered.actor) if registered else None,
        _audited_gates(registered, mine),
    )


def _is_failure(event: AuditEvent) -> bool:
    return (
        event.action is AuditAction.GATE_EVALUATED and event.evidence.get("verdict") == "block"
    ) or event.action is AuditAction.APPROVAL_LAPSED


def _audited_gates(registered: AuditEvent | None, mine: Sequence[AuditEvent]) -> dict[str, str]:
    """Gate verdicts recorded at registration, overridden by later evaluations of the version."""
    gates = dict(registered.evidence.get("gates", {})) if registered else {}
    for event in mine:
        if event.action is AuditAction.GATE_EVALUATED and "gate" in event.evidence:
            gates[str(event.evidence["gate"])] = str(event.evidence.get("verdict"))
    return gates


def gate_problems(version: ModelVersion, required: Sequence[str] = REQUIRED_GATES) -> list[str]:
    """Every reason the version's gates do not allow it forward.

    Fails closed: a required gate without a result, or any gate whose recorded value is not
    exactly `pass` or `warn` (a typo, `Block`, `error`), is a problem.
    """
    gates = version.gates
    problems = [f"gate {g!r} has no recorded result" for g in required if g not in gates]
    problems += [f"gate {g!r} is {v}" for g, v in sorted(gates.items()) if v not in _ACCEPTED]
    return problems


def audited_gate_problems(version: ModelVersion, state: ApprovalState) -> list[str]:
    """The gates as the audit log recorded them, and tags that disagree with it (a verdict
    edited in MLflow never counts)."""
    problems = [
        f"gate {g!r} has no audited result (was the version registered by driftgate?)"
        for g in REQUIRED_GATES
        if g not in state.gates
    ]
    problems += [
        f"gate {g!r} is {v} in the audit log"
        for g, v in sorted(state.gates.items())
        if v not in _ACCEPTED
    ]
    tags = version.gates
    problems += [
        f"tag gate.{g} says {tags[g]!r} but the audit log says {v!r} (edited in MLflow?)"
        for g, v in sorted(state.gates.items())
        if g in tags and tags[g] != v
    ]
    return problems


def duty_problems(
    version: ModelVersion, person: str, policy: ApprovalPolicy, state: ApprovalState
) -> list[str]:
    """Why `person` may not approve (or reject) this version under the policy as it is now.
    The trigger comes from the audited registration; a different tag is itself a problem."""
    problems = []
    if person not in policy.eligible:
        problems.append(f"{person!r} is not an approver (approvers: {policy.approvers})")
    trigger, tagged = state.trigger, version.tags.get(TAG_TRIGGERED_BY)
    if trigger is not None and tagged is not None and tagged != trigger:
        problems.append(
            f"tag triggered_by says {tagged!r} but the audit log says {trigger!r} "
            "(edited in MLflow?)"
        )
    if policy.separation_of_duties and trigger in (None, "unknown"):
        problems.append(
            "the audit log does not record who triggered the version, so separation of "
            "duties cannot be checked (register versions through driftgate's retraining job)"
        )
    elif policy.separation_of_duties and trigger == person:
        problems.append(f"{person!r} triggered and trained this version and cannot approve it")
    return problems


def approval_problems(
    version: ModelVersion, approver: str, policy: ApprovalPolicy, state: ApprovalState
) -> list[str]:
    """Why `approver` may not approve `version` now: duties, repeats, a rejection, gates."""
    problems = duty_problems(version, approver, policy, state)
    if approver in state.approvers:
        problems.append(f"{approver!r} has already approved version {version.version}")
    if state.rejected_by is not None:
        problems.append(f"version {version.version} was rejected by {state.rejected_by}")
    return problems + audited_gate_problems(version, state)


def decide_promotion(
    version: ModelVersion,
    champion: ModelVersion | None,
    policy: ApprovalPolicy,
    state: ApprovalState,
) -> PromotionDecision:
    """Promote only a version whose gates all passed and whose audited approvals satisfy the
    policy as it stands now; never onto an older version than the champion (that is a
    rollback, a deliberate act)."""
    reasons = audited_gate_problems(version, state) + _approval_reasons(version, policy, state)
    if champion is not None and champion.version == version.version:
        reasons.append(f"version {version.version} is already the champion")
    elif champion is not None and int(version.version) < int(champion.version):
        reasons.append(f"version {version.version} is older than champion {champion.version}")
    replaces = champion.version if champion else None
    if reasons:
        return PromotionDecision(False, version.version, replaces, tuple(reasons))
    approvers = ", ".join(state.approvers)
    return PromotionDecision(True, version.version, replaces, (f"approved by {approvers}",))


def _approval_reasons(
    version: ModelVersion, policy: ApprovalPolicy, state: ApprovalState
) -> list[str]:
    reasons = []
    if state.rejected_by is not None:
        reasons.append(f"it was rejected by {state.rejected_by}: {state.rejection_reason}")
    for person in state.approvers:
        reasons += [
            f"the approval by {person!r}: {p}"
            for p in duty_problems(version, person, policy, state)
        ]
    if len(state.approvers) < state.required:
        reasons.append(_missing_approvals(state))
    tagged = [p for p in (version.approved_by or "").split(",") if p]
    forged = [p for p in tagged if p not in state.approvers]
    if forged:
        reasons.append(
            f"its approval tag names {forged} without an audited approval (set by hand?)"
        )
    return reasons


def _missing_approvals(state: ApprovalState) -> str:
    if not state.approvers and not state.lapsed:
        return "it has no approval"
    text = f"it has {len(state.approvers)} of {state.required} required approvals"
    if state.lapsed:
        text += f" (lapsed after a failed gate: {', '.join(state.lapsed)})"
    return text
