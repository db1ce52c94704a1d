"""The audit trail: append-only events, each chained to the previous one by hash."""

import datetime as dt
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # gates import drift and spec; the audit log needs only the type
    from orchestrator.core.gates import GateResult


class AuditAction(StrEnum):
    DRIFT_BREACH = "drift_breach"
    RETRAIN_REQUESTED = "retrain_requested"
    RETRAIN_SUPPRESSED = "retrain_suppressed"
    RETRAIN_WAITING = "retrain_waiting"
    RETRAIN_STARTED = "retrain_started"
    MODEL_REGISTERED = "model_registered"
    GATE_EVALUATED = "gate_evaluated"
    APPROVAL_GRANTED = "approval_granted"
    APPROVAL_REFUSED = "approval_refused"
    APPROVAL_REJECTED = "approval_rejected"  # a reviewer said no: the version cannot promote
    APPROVAL_LAPSED = "approval_lapsed"  # a gate re-evaluated and failed after approval
    PROMOTION_STARTED = "promotion_started"  # intent: written before the alias moves
    PROMOTED = "promoted"  # completion: written after the alias moved
    PROMOTION_ABORTED = "promotion_aborted"  # an interrupted promotion, undone
    PROMOTION_REFUSED = "promotion_refused"
    ROLLED_BACK = "rolled_back"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class AuditEvent:
    """Who did what to which model version, when (UTC), on what evidence."""

    action: AuditAction
    actor: str
    model: str
    version: str | None = None
    dagster_run_id: str | None = None
    evidence: Mapping[str, object] = field(default_factory=dict)
    at: dt.datetime = field(default_factory=utc_now)
    id: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def canonical(self) -> str:
        body = {
            "action": self.action.value,
            "actor": self.actor,
            "model": self.model,
            "version": self.version,
            "dagster_run_id": self.dagster_run_id,
            "evidence": self.evidence,
            "at": self.at.astimezone(dt.UTC).isoformat(),
            "prev_hash": self.prev_hash,
        }
        return json.dumps(body, sort_keys=True, default=str)


def gate_event(
    model: str,
    actor: str,
    result: "GateResult",
    dagster_run_id: str | None,
    version: str | None = None,
    **context: object,
) -> AuditEvent:
    """The audit record of one gate evaluation: verdict, reason and the threshold applied."""
    evidence = {
        "gate": result.gate,
        "verdict": result.verdict.value,
        "reason": result.reason,
        "threshold": dict(result.threshold),
        **context,
    }
    return AuditEvent(AuditAction.GATE_EVALUATED, actor, model, version, dagster_run_id, evidence)


def seal(event: AuditEvent, prev_hash: str | None) -> AuditEvent:
    """Chain `event` to its predecessor: its hash covers its content and the previous hash."""
    chained = replace(event, prev_hash=prev_hash)
    return replace(chained, hash=hashlib.sha256(chained.canonical().encode()).hexdigest())


class AuditLog(ABC):
    """Append-only: there is no update and no delete."""

    @abstractmethod
    def append(self, event: AuditEvent) -> AuditEvent:
        """Store the event sealed to the last one; return it with id and hash."""

    @abstractmethod
    def events(
        self, model: str | None = None, actions: Sequence[AuditAction] | None = None
    ) -> list[AuditEvent]:
        """Events in the order they were appended, optionally filtered."""


class InMemoryAuditLog(AuditLog):
    """The fake for unit tests; same sealing as the real store."""

    def __init__(self) -> None:
        self._events: list[AuditEvent] = []

    def append(self, event: AuditEvent) -> AuditEvent:
        prev = self._events[-1].hash if self._events else None
        sealed = replace(seal(event, prev), id=len(self._events) + 1)
        self._events.append(sealed)
        return sealed

    def events(
        self, model: str | None = None, actions: Sequence[AuditAction] | None = None
    ) -> list[AuditEvent]:
        return [
            e
            for e in self._events
            if (model is None or e.model == model) and (actions is None or e.action in actions)
        ]
