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


@dataclass(frozen=True)
class ChainProblem:
    """One place where the stored trail is not the trail that was appended."""

    event_id: int | None  # the event the problem is found at
    kind: str  # "edited" | "inserted" | "deleted" | "reordered"
    detail: str  # names the event: id, action, model, version, at


def verify_chain(events: Sequence[AuditEvent]) -> list[ChainProblem]:
    """Prove the whole trail (every model, in id order) is what was appended: empty = intact.

    Each event's hash must match its content, and its prev_hash must be the hash of the event
    stored before it. Stores number events consecutively as they append, so a broken link across
    a gap in ids is a deletion, and an event sealed to a predecessor that already has a successor
    is a forged second branch. A gap with an intact link is fine: Postgres sequences skip the ids
    of rolled-back appends. Not detectable from the trail alone: removing the newest events, or
    rewriting every hash after a change; both need a head hash kept somewhere else.
    """
    position = {e.hash: i for i, e in enumerate(events)}
    problems: list[ChainProblem | None] = []
    for i, event in enumerate(events):
        if seal(replace(event, hash=None), event.prev_hash).hash != event.hash:
            problems.append(ChainProblem(event.id, "edited", f"{_name(event)} was edited"))
        elif not _linked(events, i):
            problems.append(_broken_link(events, i, position.get(event.prev_hash)))
    return [p for p in problems if p is not None]


def _name(event: AuditEvent) -> str:
    """How an operator finds the event: id, what happened to which version, and when."""
    version = f" v{event.version}" if event.version is not None else ""
    at = event.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"event {event.id} ({event.action.value} {event.model}{version}, {at}Z)"


def _linked(events: Sequence[AuditEvent], i: int) -> bool:
    return events[i].prev_hash == (events[i - 1].hash if i else None)


def _broken_link(
    events: Sequence[AuditEvent], i: int, sealed_to: int | None
) -> ChainProblem | None:
    """Why events[i] is not sealed to the event stored before it; None if already reported."""
    event = events[i]
    if sealed_to is None:
        return _unknown_predecessor(events, i)
    if sealed_to > i:
        detail = f"{_name(event)} is stored before {_name(events[sealed_to])}, its predecessor"
        return ChainProblem(event.id, "reordered", detail)
    if not _linked(events, sealed_to):
        return None  # it follows an event that was moved, which is reported where it stands
    first = events[sealed_to + 1]
    if first.prev_hash != events[sealed_to].hash:  # nothing else follows that event: a move
        detail = f"{_name(event)} is stored away from {_name(events[sealed_to])}, its predecessor"
        return ChainProblem(event.id, "reordered", detail)
    return _second_branch(events[sealed_to], first, event)


def _second_branch(parent: AuditEvent, first: AuditEvent, second: AuditEvent) -> ChainProblem:
    """Two events sealed to the same parent: the one whose id does not follow it is forged.

    Ids record append order, so the event numbered right after the parent is the original;
    when that does not decide, the later one is forged (a forger appends after the fact).
    """
    first_is_forged = parent.id is not None and first.id != parent.id + 1 == second.id
    forged, original = (first, second) if first_is_forged else (second, first)
    detail = (
        f"{_name(forged)} was inserted: it is sealed to {_name(parent)}, "
        f"which {_name(original)} already follows"
    )
    return ChainProblem(forged.id, "inserted", detail)


def _unknown_predecessor(events: Sequence[AuditEvent], i: int) -> ChainProblem:
    """events[i] is sealed to an event that is not in the trail: deleted, or replaced in place."""
    event, before = events[i], events[i - 1] if i else None
    expected = (before.id or 0) + 1 if before else 1
    if event.id is not None and event.id > expected:
        missing = str(expected) if event.id == expected + 1 else f"{expected} to {event.id - 1}"
        where = f"after {_name(before)}" if before else "at the start of the trail"
        detail = f"event(s) {missing} deleted {where}; {_name(event)} was sealed to one of them"
        return ChainProblem(event.id, "deleted", detail)
    if before is None:
        detail = f"{_name(event)} was inserted: it is first but sealed to an earlier event"
        return ChainProblem(event.id, "inserted", detail)
    detail = (
        f"{_name(before)} was inserted in place of the event that {_name(event)} "
        "was sealed to (rewritten and re-sealed)"
    )
    return ChainProblem(before.id, "inserted", detail)
