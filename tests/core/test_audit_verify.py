"""verify_chain names the event where the stored trail stops being the appended trail."""

import datetime as dt
from dataclasses import replace

import pytest

from orchestrator.core.audit import (
    AuditAction,
    AuditEvent,
    ChainProblem,
    InMemoryAuditLog,
    anchored,
    head,
    seal,
    verify_chain,
)

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
ACTIONS = [
    AuditAction.DRIFT_BREACH,
    AuditAction.RETRAIN_REQUESTED,
    AuditAction.MODEL_REGISTERED,
    AuditAction.APPROVAL_GRANTED,
    AuditAction.PROMOTED,
]


@pytest.fixture
def trail() -> list[AuditEvent]:
    """Five events for two models, ids and seqs 1 to 5, as the store hands them back."""
    log = InMemoryAuditLog()
    for n, action in enumerate(ACTIONS):
        model = "churn" if n % 2 else "toy"
        at = START + dt.timedelta(minutes=n)
        log.append(AuditEvent(action, "sensor", model, str(n), f"run-{n}", {"n": n}, at))
    return log.events()


def only(problems: list[ChainProblem]) -> ChainProblem:
    assert len(problems) == 1, problems
    return problems[0]


def forged(prev: AuditEvent, event_id: int, counted: int = 0) -> AuditEvent:
    """What an attacker writes: a plausible approval, sealed after a real event, hash recomputed."""
    event = AuditEvent(AuditAction.APPROVAL_GRANTED, "mallory", "toy", "9", at=prev.at)
    return replace(seal(event, prev, counted), id=event_id)


def renumbered(events: list[AuditEvent]) -> list[AuditEvent]:
    """The rows with ids 1, 2, 3, ... again, as a forger covering a gap or an insert leaves them."""
    return [replace(e, id=n) for n, e in enumerate(events, start=1)]


def appended(after: AuditEvent, event_id: int, counted: int = 0) -> AuditEvent:
    """What a store appends next, sealed to the last row; `counted` is its count of seqs."""
    event = AuditEvent(AuditAction.ROLLED_BACK, "sensor", "toy", "3", at=START + dt.timedelta(1))
    return replace(seal(event, after, counted), id=event_id)


def test_seal_numbers_the_event_after_its_predecessor(trail):
    event = AuditEvent(AuditAction.PROMOTED, "sensor", "toy")
    first, sixth = seal(event, None), seal(event, trail[4])
    assert (first.seq, first.prev_hash) == (1, None)
    assert (sixth.seq, sixth.prev_hash) == (6, trail[4].hash)
    assert seal(event, trail[3], counted=5).seq == 6  # a store that counted past deleted rows
    assert replace(sixth, seq=7).canonical() != sixth.canonical()  # the position is sealed


def test_an_intact_trail_has_no_problems(trail):
    assert [e.seq for e in trail] == [1, 2, 3, 4, 5]
    assert verify_chain(trail) == []
    assert verify_chain([]) == []


def test_a_gap_in_ids_with_consecutive_seqs_is_not_a_problem(trail):
    # Postgres sequences skip the id of a rolled-back append; seq is what is sealed.
    skipped = trail[:3] + [replace(e, id=e.id + 10) for e in trail[3:]]
    assert verify_chain(skipped) == []


def test_edited_evidence_names_the_edited_event(trail):
    tampered = list(trail)
    tampered[2] = replace(trail[2], evidence={"n": 99})
    problem = only(verify_chain(tampered))
    assert (problem.event_id, problem.kind) == (3, "edited")
    assert (
        problem.detail
        == "event 3 (seq 3, model_registered toy v2, 2026-03-01 09:02:00Z) was edited"
    )


def test_an_edited_actor_is_caught_even_deep_in_the_trail(trail):
    tampered = trail[:4] + [replace(trail[4], actor="alice")]
    assert [(p.event_id, p.kind) for p in verify_chain(tampered)] == [(5, "edited")]


def test_an_edited_seq_is_caught_as_an_edit(trail):
    tampered = trail[:2] + [replace(trail[2], seq=2)] + trail[3:]
    assert (3, "edited") in [(p.event_id, p.kind) for p in verify_chain(tampered)]


def test_a_deleted_middle_event_is_named_with_its_neighbours(trail):
    problem = only(verify_chain(trail[:2] + trail[3:]))
    assert (problem.event_id, problem.kind) == (4, "deleted")
    assert problem.detail.startswith("seq 3 deleted between event 2 (seq 2, retrain_requested")
    assert problem.detail.endswith(
        "and event 4 (seq 4, approval_granted churn v3, 2026-03-01 09:03:00Z)"
    )


def test_several_deleted_events_are_named_as_a_range(trail):
    problem = only(verify_chain(trail[:1] + trail[4:]))
    assert (problem.event_id, problem.kind) == (5, "deleted")
    assert problem.detail.startswith("seq 2 to 4 deleted between event 1 (seq 1, ")


def test_a_deletion_covered_by_renumbering_the_ids_is_named(trail):
    problem = only(verify_chain(renumbered(trail[:2] + trail[3:])))
    assert (problem.event_id, problem.kind) == (3, "deleted")  # event 4 now has id 3
    assert problem.detail.startswith("seq 3 deleted between event 2 (seq 2, ")
    assert "and event 3 (seq 4, approval_granted churn v3" in problem.detail


def test_a_deleted_first_event_is_named(trail):
    problem = only(verify_chain(trail[1:]))
    assert (problem.event_id, problem.kind) == (2, "deleted")
    assert problem.detail.startswith("seq 1 deleted before event 2 (seq 2, retrain_requested churn")


def test_the_newest_event_deleted_then_an_append_is_named(trail):
    # The store's count remembers seq 5, so the next append takes seq 6 and leaves a gap.
    after = appended(trail[3], event_id=6, counted=trail[4].seq)
    problem = only(verify_chain([*trail[:4], after]))
    assert (problem.event_id, problem.kind) == (6, "deleted")
    assert problem.detail.startswith("seq 5 deleted between event 4 (seq 4, approval_granted")
    assert problem.detail.endswith("and event 6 (seq 6, rolled_back toy v3, 2026-03-02 09:00:00Z)")


def test_the_newest_event_deleted_leaves_a_trail_only_an_anchor_shows_is_short(trail):
    anchor = head(trail)
    assert anchor == (5, trail[4].hash)
    assert verify_chain(trail[:4]) == []  # what the rows alone cannot show
    problem = anchored(trail[:4], *anchor)
    assert (problem.event_id, problem.kind) == (None, "deleted")
    assert f"anchored at seq 5 (hash {trail[4].hash[:12]}) is gone" in problem.detail
    assert "the trail ends at event 4 (seq 4, approval_granted churn v3" in problem.detail


def test_a_replaced_newest_event_is_named_against_the_anchor(trail):
    replaced = replace(seal(replace(trail[4], actor="mallory"), trail[3]), id=5)
    assert verify_chain([*trail[:4], replaced]) == []
    problem = anchored([*trail[:4], replaced], *head(trail))
    assert (problem.event_id, problem.kind) == (5, "deleted")
    assert "event 5 (seq 5, promoted toy v4" in problem.detail


def test_an_anchor_still_in_the_trail_is_fine(trail):
    anchor = head(trail[:3])
    assert anchored(trail, *anchor) is None
    assert anchored([*trail, appended(trail[4], event_id=6)], *head(trail)) is None
    assert head([]) is None


def test_a_forged_event_inserted_mid_trail_with_ids_renumbered_is_named(trail):
    fake = forged(trail[1], event_id=0)  # seq 3, sealed to event 2
    problem = only(verify_chain(renumbered([*trail[:2], fake, *trail[2:]])))
    assert (problem.event_id, problem.kind) == (3, "inserted")  # the fake now has id 3
    assert problem.detail.startswith("event 3 (seq 3, approval_granted toy v9")
    assert "event 4 (seq 3, model_registered toy v2" in problem.detail  # the original


def test_a_forged_event_appended_with_the_next_id_but_sealed_back_is_named(trail):
    # What a database INSERT produces: the next id, sealed to an earlier event to backdate it.
    problem = only(verify_chain([*trail, forged(trail[1], event_id=6)]))
    assert (problem.event_id, problem.kind) == (6, "inserted")
    assert "event 3 (seq 3, model_registered" in problem.detail


def test_honest_appends_after_a_forged_event_are_not_blamed(trail):
    fake = forged(trail[1], event_id=6)
    honest = appended(fake, event_id=7, counted=5)  # a store seals to the last row
    problem = only(verify_chain([*trail, fake, honest]))
    assert (problem.event_id, problem.kind) == (6, "inserted")


def test_a_forged_event_with_a_fresh_seq_sealed_back_is_named(trail):
    # Past a UNIQUE seq column: the next free seq, sealed to an early event to backdate it.
    fake = forged(trail[0], event_id=6, counted=5)
    problem = only(verify_chain([*trail, fake, appended(fake, event_id=7)]))
    assert (problem.event_id, problem.kind) == (6, "inserted")
    assert "sealed to event 1 (seq 1, " in problem.detail
    assert "not to event 5 (seq 5, " in problem.detail


def test_an_event_edited_and_resealed_is_named_as_edited_or_replaced(trail):
    resealed = replace(seal(replace(trail[2], evidence={"n": 99}), trail[1]), id=3)
    problem = only(verify_chain([*trail[:2], resealed, *trail[3:]]))
    assert (problem.event_id, problem.kind) == (3, "edited")
    assert problem.detail.startswith("event 3 (seq 3, model_registered toy v2, ")
    assert "was edited or replaced: event 4 (seq 4, " in problem.detail


def test_swapped_ids_are_named_as_reordered(trail):
    swapped = [*trail[:2], replace(trail[3], id=3), replace(trail[2], id=4), trail[4]]
    problem = only(verify_chain(swapped))
    assert (problem.event_id, problem.kind) == (3, "reordered")
    assert problem.detail.startswith("event 3 (seq 4, approval_granted")
    assert "stored before event 4 (seq 3, model_registered" in problem.detail
