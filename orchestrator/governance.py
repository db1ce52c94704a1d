"""Approval and promotion as one code path for the CLI, the demo and the promotion job.

Core decides (orchestrator.core.promotion); this module acts on the decision through the registry
and audit interfaces, and records every refusal as well as every success.
"""

from dataclasses import dataclass

from orchestrator.core.audit import AuditAction, AuditEvent, AuditLog, utc_now
from orchestrator.core.errors import ApprovalRefused, PromotionRefused
from orchestrator.core.promotion import (
    PromotionDecision,
    approval_problems,
    decide_promotion,
    gate_problems,
)
from orchestrator.core.registry import (
    CHALLENGER,
    CHAMPION,
    TAG_APPROVAL_REASON,
    TAG_APPROVED_AT,
    TAG_APPROVED_BY,
    TAG_PROMOTED_AT,
    TAG_REPLACED_VERSION,
    ModelRegistry,
    ModelVersion,
)
from orchestrator.core.spec import MonitoredModelSpec


@dataclass(frozen=True)
class Governance:
    spec: MonitoredModelSpec
    registry: ModelRegistry
    audit: AuditLog

    def approve(self, version: str, approver: str, reason: str) -> ModelVersion:
        """Record `approver`'s approval as version tags, or raise ApprovalRefused saying why."""
        name = self.spec.name
        candidate = self.registry.get_version(name, version)
        problems = approval_problems(candidate, approver, self.spec.approval)
        if problems:
            self._record(AuditAction.APPROVAL_REFUSED, approver, version, {"problems": problems})
            raise ApprovalRefused(f"{name} v{version} cannot be approved: {'; '.join(problems)}")
        self.registry.set_tags(
            name,
            version,
            {
                TAG_APPROVED_BY: approver,
                TAG_APPROVED_AT: utc_now().isoformat(),
                TAG_APPROVAL_REASON: reason,
            },
        )
        self._record(AuditAction.APPROVAL_GRANTED, approver, version, {"reason": reason})
        return self.registry.get_version(name, version)

    def decide(self, version: str) -> PromotionDecision:
        candidate = self.registry.get_version(self.spec.name, version)
        champion = self.registry.get_alias(self.spec.name, CHAMPION)
        granted = self.audit.events(self.spec.name, [AuditAction.APPROVAL_GRANTED])
        audited = {e.actor for e in granted if e.version == version}
        return decide_promotion(candidate, champion, self.spec.approval, audited)

    def promote(self, version: str, actor: str, dagster_run_id: str | None) -> PromotionDecision:
        """Move `champion` to `version` if the decision allows; otherwise leave it and raise."""
        name = self.spec.name
        decision = self.decide(version)
        if not decision.allowed:
            self.record_refusal(decision, actor, dagster_run_id)
            raise PromotionRefused(f"{name} v{version} was not promoted: {decision.explain()}")
        self.registry.set_alias(name, CHAMPION, version)
        challenger = self.registry.get_alias(name, CHALLENGER)
        if challenger is not None and challenger.version == version:
            self.registry.delete_alias(name, CHALLENGER)  # it is no longer under evaluation
        self.registry.set_tags(
            name,
            version,
            {TAG_PROMOTED_AT: utc_now().isoformat(), TAG_REPLACED_VERSION: decision.replaces or ""},
        )
        self._record(
            AuditAction.PROMOTED,
            actor,
            version,
            {"replaced_version": decision.replaces},
            dagster_run_id,
        )
        return decision

    def record_refusal(
        self, decision: PromotionDecision, actor: str, dagster_run_id: str | None
    ) -> None:
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
        decisions = [self.decide(v.version) for v in self.approved_not_promoted()]
        allowed = [d for d in decisions if d.allowed]
        newest = max(allowed, key=lambda d: int(d.version), default=None)
        return newest, [d for d in decisions if not d.allowed]

    def awaiting_approval(self) -> list[ModelVersion]:
        """Versions whose gates all passed, not yet approved, newer than the champion."""
        champion = self.registry.get_alias(self.spec.name, CHAMPION)
        floor = int(champion.version) if champion else 0
        return [
            v
            for v in self.registry.list_versions(self.spec.name)
            if int(v.version) > floor and not v.approved_by and not gate_problems(v)
        ]

    def approved_not_promoted(self) -> list[ModelVersion]:
        return [
            v
            for v in self.registry.list_versions(self.spec.name)
            if v.approved_by and TAG_PROMOTED_AT not in v.tags
        ]

    def _record(
        self,
        action: AuditAction,
        actor: str,
        version: str,
        evidence: dict,
        dagster_run_id: str | None = None,
    ) -> None:
        self.audit.append(
            AuditEvent(action, actor, self.spec.name, version, dagster_run_id, evidence)
        )
