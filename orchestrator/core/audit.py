"""The audit trail: append-only events, each sealed to the previous one by hash.

Each event's hash covers its content, its position in the whole log (seq: 1, 2, 3, ...) and the
hash of the event before it. From the trail alone, verify_chain detects any edit, any inserted
event, and any deletion followed by further appends (stores count the seqs they hand out apart
from the rows, so the next append leaves a gap), and names the event whatever ids the rows were
renumbered to. Not detectable from the trail alone: deleting (or re-sealing) only the newest
events, or rewriting every hash after a change. Those need an anchor kept outside the store:
head() taken earlier (e.g. recorded in Dagster metadata) and checked with anchored().
"""

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
    PERFORMANCE_BREACH = "performance_breach"  # realized quality past its learned bound
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
    seq: int | None = None  # 1-based position in the whole log, sealed into the hash

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
            "seq": self.seq,
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


def digest(event: AuditEvent) -> str:
    """The hash of an event's content, position and link: what its stored hash must equal."""
    return hashlib.sha256(event.canonical().encode()).hexdigest()


def seal(event: AuditEvent, prev: AuditEvent | None, counted: int = 0) -> AuditEvent:
    """Chain `event` after `prev`, the last event stored (None for the first one).

    The hash covers the content, the position (seq) and prev's hash, so no event can be edited,
    dropped or slipped in unseen. A store passes `counted`, the seq it last handed out, kept apart
    from the rows: after its newest events are deleted the next event then leaves a gap in seq
    instead of taking their place unnoticed.
    """
    after = max(prev.seq or 0, counted) if prev else counted
    chained = replace(event, prev_hash=prev.hash if prev else None, seq=after + 1)
    return replace(chained, hash=digest(chained))


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

    @abstractmethod
    def appended(self) -> int:
        """How many events were ever appended (a count that only goes up): more than the
        highest stored seq means the newest events were deleted."""


def truncation(events: Sequence[AuditEvent], appended: int) -> "ChainProblem | None":
    """The newest events deleted: the store counted more appends than the trail holds."""
    last = max((e.seq or 0 for e in events), default=0)
    if appended <= last:
        return None
    missing = f"seq {last + 1}" if appended == last + 1 else f"seq {last + 1}..{appended}"
    return ChainProblem(None, "deleted", f"the newest event(s) {missing} were deleted")


def trail_problems(events: Sequence[AuditEvent], appended: int) -> list["ChainProblem"]:
    """Everything wrong with the whole trail: `verify_chain` on the events, and deletion of
    the newest ones against the store's count of appends."""
    problems = verify_chain(events)
    cut = truncation(events, appended)
    return problems if cut is None else [*problems, cut]


class InMemoryAuditLog(AuditLog):
    """The fake for unit tests; same sealing as the real store."""

    def __init__(self) -> None:
        self._events: list[AuditEvent] = []

    def append(self, event: AuditEvent) -> AuditEvent:
        prev = self._events[-1] if self._events else None
        sealed = replace(seal(event, prev), id=len(self._events) + 1)
        self._events.append(sealed)
        return sealed

    def appended(self) -> int:
        return len(self._events)

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
    detail: str  # names the event: id, seq, action, model, version, at


def verify_chain(events: Sequence[AuditEvent]) -> list[ChainProblem]:
    """Prove the whole trail (every model, in id order) is what was appended: empty = intact.

    Each event's hash must match its content, and the sealed seqs must run 1, 2, 3, ... with
    each event sealed to the hash of the one before it, so every tampering is named at the event
    where it happened, whatever ids the rows were renumbered to.
    """
    chain, claims = _claimants(events)
    known = {e.hash: e for e in events}
    forged = {f.hash for f, _ in claims}
    problems = [_edited(e) for e in events if digest(e) != e.hash]
    problems += [_claimed(f, original) for f, original in claims]
    links = zip([None, *chain], chain, strict=False)
    # An event sealed to a forged one was appended after it: the forgery is reported already.
    problems += [p for b, e in links if e.prev_hash not in forged and (p := _link(b, e, known))]
    return sorted(problems, key=lambda p: (p.event_id is None, p.event_id or 0))


def head(events: Sequence[AuditEvent]) -> tuple[int, str] | None:
    """(seq, hash) of the newest event: the anchor to keep outside the store (e.g. in Dagster
    metadata), since deleting the newest events leaves a shorter trail that still verifies."""
    if not events or events[-1].seq is None or events[-1].hash is None:
        return None
    return events[-1].seq, events[-1].hash


def anchored(
    events: Sequence[AuditEvent], anchor_seq: int, anchor_hash: str
) -> ChainProblem | None:
    """Whether the trail still holds an anchor taken earlier by head(); None if it does.

    Only an anchor kept elsewhere shows that events were deleted from the end of the trail
    (or the newest event replaced): the trail itself ends cleanly either way.
    """
    if any(e.seq == anchor_seq and e.hash == anchor_hash for e in events):
        return None
    gone = f"the event anchored at seq {anchor_seq} (hash {anchor_hash[:12]}) is gone"
    stand_in = next((e for e in events if e.seq == anchor_seq), None)
    if stand_in is not None:
        detail = f"{gone}: {_name(stand_in)} was put in its place"
        return ChainProblem(stand_in.id, "deleted", detail)
    last = max(events, key=lambda e: e.seq or 0, default=None)
    end = f"the trail ends at {_name(last)}" if last else "the trail is empty"
    return ChainProblem(None, "deleted", f"{gone}: {end}; the newest events were deleted")


def _name(event: AuditEvent) -> str:
    """How an operator finds the event: id, position, what happened to which version, when."""
    version = f" v{event.version}" if event.version is not None else ""
    at = event.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"event {event.id} (seq {event.seq}, {event.action.value} {event.model}{version}, {at}Z)"


def _edited(event: AuditEvent) -> ChainProblem:
    return ChainProblem(event.id, "edited", f"{_name(event)} was edited")


def _claimants(
    events: Sequence[AuditEvent],
) -> tuple[list[AuditEvent], list[tuple[AuditEvent, AuditEvent]]]:
    """The appended chain, one event per seq, and (forged, original) for each other claimant.

    Of events claiming one seq the original is the one sealed to the chain so far, then the one
    the next seq is sealed to (a forger cannot re-seal what follows without breaking its hash),
    then the earliest stored: a forger adds after the fact.
    """
    by_seq: dict[int, list[AuditEvent]] = {}
    for event in events:
        by_seq.setdefault(event.seq or 0, []).append(event)
    chain: list[AuditEvent] = []
    claims: list[tuple[AuditEvent, AuditEvent]] = []
    for seq in sorted(by_seq):
        link = chain[-1].hash if chain else None
        followed = {e.prev_hash for e in by_seq.get(seq + 1, [])}
        ranked = sorted(by_seq[seq], key=lambda e: (e.prev_hash != link, e.hash not in followed))
        chain.append(ranked[0])
        claims += [(forged, ranked[0]) for forged in ranked[1:]]
    return chain, claims


def _claimed(forged: AuditEvent, original: AuditEvent) -> ChainProblem:
    detail = f"{_name(forged)} was inserted: {_name(original)} holds seq {original.seq}"
    return ChainProblem(forged.id, "inserted", detail)


def _link(
    before: AuditEvent | None,
    event: AuditEvent,
    known: Mapping[str | None, AuditEvent],
) -> ChainProblem | None:
    """What lies between two events adjacent in the chain (`before` None: the first event)."""
    expected = before.seq + 1 if before and before.seq is not None else 1
    if event.seq != expected or (before is None and event.prev_hash is not None):
        return _deleted(before, event, expected)
    if before is None or event.prev_hash == before.hash:
        return _reordered(before, event)
    sealed_to = known.get(event.prev_hash)
    if sealed_to is not None:
        detail = f"{_name(event)} was inserted: it is sealed to {_name(sealed_to)}"
        return ChainProblem(event.id, "inserted", f"{detail}, not to {_name(before)}")
    detail = f"{_name(event)} is sealed to other content at seq {before.seq}"
    return ChainProblem(before.id, "edited", f"{_name(before)} was edited or replaced: {detail}")


def _deleted(before: AuditEvent | None, event: AuditEvent, expected: int) -> ChainProblem:
    """Events missing between `before` and `event`, or before `event` when it is first."""
    last = (event.seq or 0) - 1
    missing = f"seq {expected}" + (f" to {last}" if last > expected else "")
    if before is not None:
        where = f"between {_name(before)} and {_name(event)}"
    else:
        where = f"before {_name(event)}, the first event stored"
        missing = missing if last >= expected else "the earlier event it is sealed to"
    return ChainProblem(event.id, "deleted", f"{missing} deleted {where}")


def _reordered(before: AuditEvent | None, event: AuditEvent) -> ChainProblem | None:
    """Ids say stored order, which readers go by; it must follow the sealed order."""
    if before is None or before.id is None or event.id is None or event.id > before.id:
        return None
    detail = f"{_name(event)} is stored before {_name(before)}, which it follows"
    return ChainProblem(event.id, "reordered", detail)
