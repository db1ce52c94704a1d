"""Answers read from the audit trail: is it intact, and which model was live when.

Plain functions over the registry and audit interfaces; the CLI prints what they return.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.core.audit import AuditAction, AuditEvent, trail_problems, verify_chain
from orchestrator.core.history import Tenure, champion_at, open_intents, unrecorded_move
from orchestrator.core.promotion import approval_state
from orchestrator.core.registry import (
    CHAMPION,
    TAG_APPROVAL_STATE,
    TAG_APPROVALS,
    TAG_APPROVED_BY,
    TAG_TRAINING_DATA_HASH,
    ModelRegistry,
    ModelVersion,
)
from orchestrator.core.spec import ApprovalPolicy


@dataclass(frozen=True)
class Finding:
    """One thing `driftgate audit verify` reports, and what to do about it."""

    kind: str  # edited, inserted, deleted, reordered, interrupted
    detail: str
    remedy: str


def verify_findings(
    events: Sequence[AuditEvent],
    champions: dict[str, ModelVersion | None],
    versions: Sequence[ModelVersion] = (),
    policies: Mapping[str, ApprovalPolicy] | None = None,
    appended: int | None = None,
) -> list[Finding]:
    """Tampering anywhere in the whole log, moves of `champion` left half done or made
    outside driftgate, and approval tags in MLflow that the audited approvals do not back.

    `champions` maps each model to where its alias points now (from MLflow), which tells
    whether an interrupted move got as far as moving the alias.
    """
    remedy = "restore the audit store from a backup; treat later events as suspect"
    problems = verify_chain(events) if appended is None else trail_problems(events, appended)
    findings = [Finding(p.kind, p.detail, remedy) for p in problems]
    for model, champion in champions.items():
        mine = [e for e in events if e.model == model]
        intents = open_intents(mine)
        findings += [_interrupted(model, intent, champion) for intent in intents]
        if not intents and (moved := _moved_outside(model, mine, champion)):
            findings.append(moved)
    for version in versions:
        policy = (policies or {}).get(version.name)
        if policy is not None and (forged := _forged_approval(version, events, policy)):
            findings.append(forged)
    return findings


def _moved_outside(
    model: str, events: Sequence[AuditEvent], champion: ModelVersion | None
) -> Finding | None:
    moved = unrecorded_move(events, champion.version if champion else None)
    if moved is None:
        return None
    detail = (
        f"{model}: champion is v{moved[0]} in MLflow but v{moved[1] or 'none'}"
        " by the audit trail: the alias was moved outside driftgate"
    )
    return Finding("unrecorded_move", detail, "move it back, or promote/rollback with driftgate")


def _forged_approval(
    version: ModelVersion, events: Sequence[AuditEvent], policy: ApprovalPolicy
) -> Finding | None:
    """Approval tags naming people who never approved through driftgate, or saying approved
    for a version the audit log has rejected (set by hand). Judged on names, not on today's
    quorum: a version approved under an earlier policy is not forged."""
    mine = [e for e in events if e.model == version.name and e.version == version.version]
    granted = {e.actor for e in mine if e.action is AuditAction.APPROVAL_GRANTED}
    claims = {
        TAG_APPROVED_BY: set(filter(None, (version.approved_by or "").split(","))),
        TAG_APPROVALS: set(filter(None, version.tags.get(TAG_APPROVALS, "").split(","))),
    }
    wrong = [
        f"{tag} names {sorted(names - granted)}" for tag, names in claims.items() if names - granted
    ]
    rejected = approval_state(version.version, mine, policy).rejected_by
    if version.tags.get(TAG_APPROVAL_STATE) == "approved" and rejected:
        wrong.append(f"{TAG_APPROVAL_STATE} says approved, but {rejected} rejected it")
    if not wrong:
        return None
    detail = f"{version.name} v{version.version}: {'; '.join(wrong)} (set by hand?)"
    return Finding("forged_approval", detail, "the version cannot promote; correct the tags")


def _interrupted(model: str, intent: AuditEvent, champion: ModelVersion | None) -> Finding:
    now = champion.version if champion else "none"
    detail = (
        f"{model}: a move of champion to v{intent.version} by {intent.actor} "
        f"(event {intent.id}, {intent.at:%Y-%m-%d %H:%M:%S}Z) was never completed; "
        f"champion is v{now}"
    )
    if champion is not None and champion.version == intent.version:
        remedy = f"the alias did move: `driftgate audit recover {model}` records the completion"
    else:
        remedy = (
            f"the alias did not move: `driftgate audit recover {model}` records it as aborted; "
            f"then `driftgate promote {model} {intent.version}` retries it if still wanted"
        )
    return Finding("interrupted", detail, remedy)


@dataclass(frozen=True)
class LiveChampion:
    """Which version served at an instant, and the evidence it served on."""

    tenure: Tenure
    version: ModelVersion
    approvals: list[AuditEvent]
    gate_events: list[AuditEvent]

    @property
    def training(self) -> str:
        partitions = self.version.training_partitions
        span = f"{partitions[0]}..{partitions[-1]} ({len(partitions)} days)" if partitions else "?"
        return f"{span}, data hash {self.version.tags.get(TAG_TRAINING_DATA_HASH, '?')}"


def live_champion(
    model: str,
    registry: ModelRegistry,
    events: Sequence[AuditEvent],
    at: dt.datetime,
    policy: ApprovalPolicy,
) -> LiveChampion | None:
    """The champion at `at` (UTC) by the audit trail, with the approvals that counted when it
    took over (lapsed ones left out) and its gate results."""
    tenure = champion_at(events, at)
    if tenure is None:
        return None
    mine = [e for e in events if e.version == tenure.version and e.at <= tenure.since]
    counted = set(approval_state(tenure.version, mine, policy).approvers)
    return LiveChampion(
        tenure,
        registry.get_version(model, tenure.version),
        [e for e in mine if e.action is AuditAction.APPROVAL_GRANTED and e.actor in counted],
        [e for e in mine if e.action is AuditAction.GATE_EVALUATED],
    )


def current_champions(registry: ModelRegistry, models: Sequence[str]) -> dict:
    return {model: registry.get_alias(model, CHAMPION) for model in models}
