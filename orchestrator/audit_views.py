"""Answers read from the audit trail: is it intact, and which model was live when.

Plain functions over the registry and audit interfaces; the CLI prints what they return.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.core.audit import AuditAction, AuditEvent, verify_chain
from orchestrator.core.history import Tenure, champion_at, open_intents
from orchestrator.core.registry import CHAMPION, TAG_TRAINING_DATA_HASH, ModelRegistry, ModelVersion


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
) -> list[Finding]:
    """Tampering anywhere in the whole log, moves of `champion` left half done, and approval
    tags in MLflow that no audited approval backs.

    `champions` maps each model to where its alias points now (from MLflow), which tells
    whether an interrupted move got as far as moving the alias.
    """
    remedy = "restore the audit store from a backup; treat later events as suspect"
    findings = [Finding(p.kind, p.detail, remedy) for p in verify_chain(events)]
    for model, champion in champions.items():
        for intent in open_intents([e for e in events if e.model == model]):
            findings.append(_interrupted(model, intent, champion))
    return findings + [f for v in versions if (f := _forged_approval(v, events))]


def _forged_approval(version: ModelVersion, events: Sequence[AuditEvent]) -> Finding | None:
    audited = {
        e.actor
        for e in events
        if e.model == version.name
        and e.version == version.version
        and e.action is AuditAction.APPROVAL_GRANTED
    }
    forged = [p for p in (version.approved_by or "").split(",") if p and p not in audited]
    if not forged:
        return None
    detail = (
        f"{version.name} v{version.version}: MLflow tag approved_by names {forged}, "
        "who never approved it through driftgate"
    )
    return Finding("forged_approval", detail, "the version cannot promote; remove the tag")


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
    model: str, registry: ModelRegistry, events: Sequence[AuditEvent], at: dt.datetime
) -> LiveChampion | None:
    """The champion at `at` (UTC) by the audit trail, with its approvals and gate results."""
    tenure = champion_at(events, at)
    if tenure is None:
        return None
    mine = [e for e in events if e.version == tenure.version and e.at <= tenure.since]
    return LiveChampion(
        tenure,
        registry.get_version(model, tenure.version),
        [e for e in mine if e.action is AuditAction.APPROVAL_GRANTED],
        [e for e in mine if e.action is AuditAction.GATE_EVALUATED],
    )


def current_champions(registry: ModelRegistry, models: Sequence[str]) -> dict:
    return {model: registry.get_alias(model, CHAMPION) for model in models}
