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


def champion_at(events: Sequence[AuditEvent], at: dt.datetime) -> Tenure | None:
    """The version that was champion at instant `at` (UTC), by completed moves up to then."""
    tenure = None
    for event in events:
        if event.at > at:
            break
        if event.action in MOVES and event.version is not None:
            tenure = Tenure(event.version, event.at, event)
    return tenure


def tenures(events: Sequence[AuditEvent]) -> list[Tenure]:
    """Every completed move, oldest first."""
    return [Tenure(e.version, e.at, e) for e in events if e.action in MOVES and e.version]


def open_intents(events: Sequence[AuditEvent]) -> list[AuditEvent]:
    """Announced moves (PROMOTION_STARTED) that no completion or abort has closed."""
    pending: dict[int, AuditEvent] = {}
    for event in events:
        if event.action is AuditAction.PROMOTION_STARTED and event.id is not None:
            pending[event.id] = event
        elif event.action in _CLOSES:
            pending.pop(event.evidence.get("intent_id"), None)
    return list(pending.values())
