"""Approval, rejection, promotion and rollback as one code path for the CLI, the demo and the
promotion job.

Core decides (orchestrator.core.promotion); this module acts on the decision through the registry
and audit interfaces, and records every refusal as well as every success. Every move of the
`champion` alias is crash-safe: the intent is recorded first, then the alias moves, then the
completion is recorded, so a crash leaves the old or the new champion and an open intent that
`driftgate audit verify` reports and `driftgate audit recover` closes.
"""

import datetime as dt
from dataclasses import dataclass

from orchestrator.core.audit import (
    AuditAction,
    AuditEvent,
    AuditLog,
    trail_problems,
    utc_now,
)
from orchestrator.core.errors import ApprovalRefused, PromotionRefused
from orchestrator.core.gates import GateResult
from orchestrator.core.history import current, fallback, open_intents, tenures, unrecorded_move
from orchestrator.core.promotion import (
    ApprovalState,
    PromotionDecision,
    approval_problems,
    approval_state,
    audited_gate_problems,
    decide_promotion,
    duty_problems,
)
from orchestrator.core.registry import (
    CHALLENGER,
    CHAMPION,
    TAG_APPROVAL_REASON,
    TAG_APPROVAL_STATE,
    TAG_APPROVALS,
    TAG_APPROVED_AT,
    TAG_APPROVED_BY,
    TAG_PROMOTED_AT,
    TAG_REJECTED_BY,
    TAG_REPLACED_VERSION,
    ModelRegistry,
    ModelVersion,
)
from orchestrator.core.spec import MonitoredModelSpec


@dataclass(frozen=True)
class Governance:
    """One model's approvals and moves of `champion`, decided by core, evidenced in the audit
    log, mirrored in MLflow."""

    spec: MonitoredModelSpec
    registry: ModelRegistry
    audit: AuditLog

    # -- approvals --

    def state(self, version: str) -> ApprovalState:
        """The version's approvals, rejection, trigger and gates as the audit log has them."""
        return approval_state(version, self.audit.events(self.spec.name), self.spec.approval)

    def approve(self, version: str, approver: str, reason: str) -> ModelVersion:
        """Record `approver`'s approval, or raise ApprovalRefused saying why (audited too)."""
        candidate = self.registry.get_version(self.spec.name, version)
        problems = approval_problems(candidate, approver, self.spec.approval, self.state(version))
        if not reason.strip():
            problems.append("an approval needs a reason (--reason)")
        if problems:
            self._record(AuditAction.APPROVAL_REFUSED, approver, version, {"problems": problems})
            raise ApprovalRefused(
                f"{self.spec.name} v{version} cannot be approved: {'; '.join(problems)}"
            )
        self._record(AuditAction.APPROVAL_GRANTED, approver, version, {"reason": reason})
        return self._mirror(version, reason)

    def reject(self, version: str, reviewer: str, reason: str) -> ModelVersion:
        """Record that `reviewer` said no: the version can no longer be promoted."""
        candidate = self.registry.get_version(self.spec.name, version)
        problems = duty_problems(candidate, reviewer, self.spec.approval, self.state(version))
        if not reason.strip():
            problems.append("a rejection needs a reason")
        if problems:
            evidence = {"problems": problems, "attempted": "reject"}
            self._record(AuditAction.APPROVAL_REFUSED, reviewer, version, evidence)
            raise ApprovalRefused(
                f"{self.spec.name} v{version} cannot be rejected by {reviewer!r}: "
                + "; ".join(problems)
            )
        self._record(AuditAction.APPROVAL_REJECTED, reviewer, version, {"reason": reason})
        return self._mirror(version, reason)

    def _mirror(self, version: str, reason: str) -> ModelVersion:
        """Copy the audited state onto the version's MLflow tags, for people reading MLflow."""
        state = self.state(version)
        tags = {
            TAG_APPROVAL_STATE: state.label,
            TAG_APPROVALS: ",".join(state.approvers),
            TAG_APPROVED_BY: ",".join(state.approvers) if state.approved else "",
            TAG_REJECTED_BY: state.rejected_by or "",
            TAG_APPROVAL_REASON: reason,
        }
        if state.approved:
            tags[TAG_APPROVED_AT] = utc_now().isoformat()
        self.registry.set_tags(self.spec.name, version, tags)
        return self.registry.get_version(self.spec.name, version)

    def lapse_on_failure(self, version: str, result: GateResult, dagster_run_id: str) -> None:
        """A gate evaluated again and failed: approvals given before no longer count. Say so
        in the audit log and in MLflow, and take the version out of evaluation."""
        events = self.audit.events(self.spec.name)
        mine = [e for e in events if e.version == version]
        grants = [e.id or 0 for e in mine if e.action is AuditAction.APPROVAL_GRANTED]
        lapses = [e.id or 0 for e in mine if e.action is AuditAction.APPROVAL_LAPSED]
        if not result.blocks or not grants or max(lapses, default=0) > max(grants):
            return  # nothing approved, or already lapsed since the last approval
        lapsed = self.state(version).lapsed
        evidence = {"gate": result.gate, "reason": result.reason, "lapsed": list(lapsed)}
        self._record(AuditAction.APPROVAL_LAPSED, "driftgate", version, evidence, dagster_run_id)
        self._mirror(version, f"lapsed: {result.reason}")
        challenger = self.registry.get_alias(self.spec.name, CHALLENGER)
        if challenger is not None and challenger.version == version:
            self.registry.delete_alias(self.spec.name, CHALLENGER)

    # -- promotion --

    def decide(self, version: str, integrity: list[str] | None = None) -> PromotionDecision:
        """Whether `version` may become champion now, and why (not). `integrity` is
        `integrity_problems()` when the caller already has it (one check for many versions)."""
        candidate = self.registry.get_version(self.spec.name, version)
        champion = self.registry.get_alias(self.spec.name, CHAMPION)
        decision = decide_promotion(candidate, champion, self.spec.approval, self.state(version))
        blocked = self.integrity_problems() if integrity is None else integrity
        if not blocked:
            return decision
        reasons = (*decision.reasons, *blocked)
        return PromotionDecision(False, version, decision.replaces, reasons)

    def integrity_problems(self) -> list[str]:
        """What must be sorted out before `champion` may move at all: a trail that fails
        verification, an interrupted move, or an alias moved outside driftgate."""
        events = self.audit.events()
        mine = [e for e in events if e.model == self.spec.name]
        problems = []
        if broken := trail_problems(events, self.audit.appended()):
            problems.append(
                f"the audit trail fails verification ({broken[0].detail}): driftgate audit verify"
            )
        if interrupted := open_intents(mine):
            problems.append(
                f"an interrupted move of champion (audit event {interrupted[0].id}) "
                f"must be closed first: driftgate audit recover {self.spec.name}"
            )
        elif (drift := self._alias_drift(mine)) is not None:
            problems.append(drift)
        return problems

    def _alias_drift(self, events: list[AuditEvent]) -> str | None:
        champion = self.registry.get_alias(self.spec.name, CHAMPION)
        moved = unrecorded_move(events, champion.version if champion else None)
        if moved is None:
            return None
        return (
            f"champion is v{moved[0]} in MLflow but v{moved[1]} in the audit trail: the alias "
            "was moved outside driftgate (driftgate audit verify)"
        )

    def promote(self, version: str, actor: str, dagster_run_id: str | None) -> PromotionDecision:
        """Move `champion` to `version` if the decision allows; otherwise leave it and raise."""
        decision = self.decide(version)
        if not decision.allowed:
            self.record_refusal(decision, actor, dagster_run_id)
            raise PromotionRefused(
                f"{self.spec.name} v{version} was not promoted: {decision.explain()}"
            )
        evidence = {"replaced_version": decision.replaces, "approved_by": decision.explain()}
        self._move(AuditAction.PROMOTED, version, actor, evidence, dagster_run_id)
        return decision

    def rollback(
        self,
        actor: str,
        reason: str,
        to: str | None = None,
        dagster_run_id: str | None = None,
        automatic: bool = False,
    ) -> str:
        """Move `champion` back to an earlier champion (by default the one before it, never
        one already rolled back from). Only an approver may, or safe mode (`automatic`) when
        the policy enables it; only to a version that served as champion before."""
        problems, target = self._rollback_problems(actor, reason, to, automatic)
        if problems:
            evidence = {"problems": problems, "to": target}
            self._record(AuditAction.PROMOTION_REFUSED, actor, target, evidence, dagster_run_id)
            raise PromotionRefused(f"{self.spec.name}: rollback refused: {'; '.join(problems)}")
        evidence = {
            "replaced_version": current(self.audit.events(self.spec.name)).version,
            "reason": reason,
        }
        self._move(AuditAction.ROLLED_BACK, target, actor, evidence, dagster_run_id)
        return target

    def _rollback_problems(
        self, actor: str, reason: str, to: str | None, automatic: bool
    ) -> tuple[list[str], str | None]:
        events = self.audit.events(self.spec.name)
        now, target = current(events), to or fallback(events)
        if automatic:
            problems = [] if self.spec.safe_mode.enabled else ["safe mode is not enabled"]
        else:
            problems = (
                [] if actor in self.spec.approval.eligible else [f"{actor!r} is not an approver"]
            )
        if not reason.strip():
            problems.append("a rollback needs a reason")
        if now is None or target is None:
            problems.append("there is no earlier champion to roll back to")
        elif target == now.version:
            problems.append(f"version {target} is already the champion")
        elif target not in {t.version for t in tenures(events)}:
            problems.append(f"version {target} never served as champion; promote it instead")
        return problems + self.integrity_problems(), target

    def _move(
        self,
        action: AuditAction,
        version: str,
        actor: str,
        evidence: dict,
        dagster_run_id: str | None,
    ) -> None:
        """Intent, alias move, completion: in that order, so no move goes unrecorded. Just
        before the alias moves, nothing may have changed since the decision (another move
        started, or the alias moved): then the intent is closed as aborted instead."""
        intent = self._record(
            AuditAction.PROMOTION_STARTED,
            actor,
            version,
            {"kind": action.value, **evidence},
            dagster_run_id,
        )
        if changed := self._changed_since_decision(intent, evidence.get("replaced_version")):
            self._record(
                AuditAction.PROMOTION_ABORTED,
                actor,
                version,
                {"intent_id": intent.id, "reason": changed},
                dagster_run_id,
            )
            raise PromotionRefused(f"{self.spec.name} v{version} was not moved: {changed}")
        self.registry.set_alias(self.spec.name, CHAMPION, version)
        self._finish_move(version, evidence)
        self._record(action, actor, version, {**evidence, "intent_id": intent.id}, dagster_run_id)

    def _changed_since_decision(self, intent: AuditEvent, replaces: str | None) -> str | None:
        """Anything that would change the decision, recorded after it was taken: another
        move, a moved alias, or (for a promotion) a rejection, lapse or failed gate."""
        others = [e for e in open_intents(self.audit.events(self.spec.name)) if e.id != intent.id]
        if others:
            return f"another move of champion started meanwhile (audit event {others[0].id})"
        champion = self.registry.get_alias(self.spec.name, CHAMPION)
        if (champion.version if champion else None) != replaces:
            return "champion moved meanwhile"
        if intent.evidence.get("kind") != AuditAction.PROMOTED.value:
            return None
        version = self.registry.get_version(self.spec.name, intent.version)
        state = self.state(intent.version)
        again = decide_promotion(version, champion, self.spec.approval, state)
        return None if again.allowed else f"the decision changed meanwhile: {again.explain()}"

    def _finish_move(self, version: str, evidence: dict) -> None:
        """The tags and aliases that go with a move (idempotent: recovery repeats them, dated
        from the intent)."""
        challenger = self.registry.get_alias(self.spec.name, CHALLENGER)
        if challenger is not None and challenger.version == version:
            self.registry.delete_alias(self.spec.name, CHALLENGER)  # no longer under evaluation
        self.registry.set_tags(
            self.spec.name,
            version,
            {
                TAG_PROMOTED_AT: evidence.get("intent_at") or utc_now().isoformat(),
                TAG_REPLACED_VERSION: evidence.get("replaced_version") or "",
            },
        )

    def recover(
        self, actor: str, older_than: dt.timedelta = dt.timedelta(minutes=5)
    ) -> list[AuditEvent]:
        """Close interrupted moves older than `older_than` (younger ones may be in flight) by
        what MLflow shows: if the alias reached the target, finish the move and record its
        completion; otherwise record it as aborted (the champion is as it was)."""
        champion = self.registry.get_alias(self.spec.name, CHAMPION)
        cutoff, closed = utc_now() - older_than, []
        for intent in open_intents(self.audit.events(self.spec.name)):
            if intent.at > cutoff:
                continue
            evidence = {
                **intent.evidence,
                "intent_id": intent.id,
                "recovered": True,
                "intent_at": intent.at.isoformat(),
            }
            if champion is not None and champion.version == intent.version:
                self._finish_move(intent.version, evidence)
                action = AuditAction(intent.evidence["kind"])
            else:
                action = AuditAction.PROMOTION_ABORTED
            closed.append(self._record(action, actor, intent.version, evidence))
        return closed

    def record_refusal(
        self, decision: PromotionDecision, actor: str, dagster_run_id: str | None
    ) -> None:
        """Audit a refused promotion with its reasons."""
        self._record(
            AuditAction.PROMOTION_REFUSED,
            actor,
            decision.version,
            {"reasons": list(decision.reasons)},
            dagster_run_id,
        )

    def next_promotion(self) -> tuple[PromotionDecision | None, list[PromotionDecision]]:
        """The newest approved version allowed to become champion, and the refused ones.

        Only the newest is offered, so two promotion runs can never race an older approval
        past a newer one.
        """
        candidates = self.approved_not_promoted()
        # The whole trail is verified once per tick, not once per candidate version.
        integrity = self.integrity_problems() if candidates else []
        decisions = [self.decide(v.version, integrity) for v in candidates]
        allowed = [d for d in decisions if d.allowed]
        newest = max(allowed, key=lambda d: int(d.version), default=None)
        return newest, [d for d in decisions if not d.allowed]

    def awaiting_approval(self) -> list[ModelVersion]:
        """Versions newer than the champion whose audited gates passed, neither approved
        (to the quorum) nor rejected yet."""
        champion = self.registry.get_alias(self.spec.name, CHAMPION)
        floor = int(champion.version) if champion else 0
        events = self.audit.events(self.spec.name)
        waiting = []
        for version in self.registry.list_versions(self.spec.name):
            state = approval_state(version.version, events, self.spec.approval)
            if int(version.version) > floor and not state.approved and not state.rejected_by:
                if not audited_gate_problems(version, state):
                    waiting.append(version)
        return waiting

    def approved_not_promoted(self) -> list[ModelVersion]:
        """Versions that never served and that the audit log calls approved, or whose tags
        claim so (those get refused, and the refusal recorded, by `decide`)."""
        events = self.audit.events(self.spec.name)
        return [
            v
            for v in self.registry.list_versions(self.spec.name)
            if TAG_PROMOTED_AT not in v.tags
            and (v.approved_by or approval_state(v.version, events, self.spec.approval).approved)
        ]

    def _record(
        self,
        action: AuditAction,
        actor: str,
        version: str | None,
        evidence: dict,
        dagster_run_id: str | None = None,
    ) -> AuditEvent:
        return self.audit.append(
            AuditEvent(action, actor, self.spec.name, version, dagster_run_id, evidence)
        )
