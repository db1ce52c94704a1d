"""Who held `champion` when, read back from the audit trail.

MLflow keeps only where an alias points now; the audit trail keeps every completed move
(PROMOTED, ROLLED_BACK), and every move is announced first (PROMOTION_STARTED), so a move whose
completion was never recorded (a crash in between) shows up as an open intent.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.core.audit import AuditAction, AuditEvent

MOVES = (AuditAction.PROMOTED, AuditAction.ROLLED_BACK)
_CLOSES = (*MOVES, AuditAction.PROMOTION_ABORTED)


@dataclass(frozen=True)
class Tenure:
    """A version's time as champion: from the move that made it so."""

    version: str
    since: dt.datetime
    move: AuditEvent

    @property
    def previous(self) -> str | None:
        """The champion it replaced."""
        replaced = self.move.evidence.get("replaced_version")
        return str(replaced) if replaced else None


def _since(move: AuditEvent) -> dt.datetime:
    """When the alias moved: a recovered completion carries its intent's time, since the
    alias moved right after the intent, not when someone recovered the record."""
    moved_at = move.evidence.get("intent_at")
    return dt.datetime.fromisoformat(moved_at) if moved_at else move.at


def tenures(events: Sequence[AuditEvent]) -> list[Tenure]:
    """Every completed move, in the order recorded."""
    return [Tenure(e.version, _since(e), e) for e in events if e.action in MOVES and e.version]


def champion_at(events: Sequence[AuditEvent], at: dt.datetime) -> Tenure | None:
    """The version that was champion at instant `at` (UTC), by completed moves up to then.
    Every event is looked at: under contention, record order and timestamps may differ."""
    held = [t for t in tenures(events) if t.since <= at]
    return max(held, key=lambda t: t.since, default=None)


def current(events: Sequence[AuditEvent]) -> Tenure | None:
    """The champion now, by the last completed move in record order (no clock involved, so
    hosts whose clocks disagree still agree on it)."""
    moves = tenures(events)
    return moves[-1] if moves else None


def unrecorded_move(
    events: Sequence[AuditEvent], alias: str | None
) -> tuple[str | None, str | None] | None:
    """(MLflow's champion, the trail's champion) when they differ: the alias was moved
    outside driftgate. None when they agree."""
    recorded = current(events)
    audited = recorded.version if recorded else None
    return None if alias == audited else (alias, audited)


def fallback(events: Sequence[AuditEvent]) -> str | None:
    """The champion before the current one, ignoring versions rolled back from: promotions
    stack up, and a rollback to v pops every version above v."""
    stack: list[str] = []
    for tenure in tenures(events):
        if tenure.move.action is AuditAction.ROLLED_BACK and tenure.version in stack:
            del stack[stack.index(tenure.version) + 1 :]
        else:
            stack.append(tenure.version)
    return stack[-2] if len(stack) >= 2 else None


def open_intents(events: Sequence[AuditEvent]) -> list[AuditEvent]:
    """Announced moves (PROMOTION_STARTED) that no completion or abort has closed."""
    pending: dict[int, AuditEvent] = {}
    for event in events:
        if event.action is AuditAction.PROMOTION_STARTED and event.id is not None:
            pending[event.id] = event
        elif event.action in _CLOSES:
            pending.pop(event.evidence.get("intent_id"), None)
    return list(pending.values())
