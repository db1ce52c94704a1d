"""verify_chain names the event where the stored trail stops being the appended trail."""

import datetime as dt
from dataclasses import replace

import pytest

from orchestrator.core.audit import (
    AuditAction,
    AuditEvent,
    ChainProblem,
    InMemoryAuditLog,
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
    """Five events for two models, ids 1 to 5, as the store hands them back."""
    log = InMemoryAuditLog()
    for n, action in enumerate(ACTIONS):
        model = "churn" if n % 2 else "toy"
        at = START + dt.timedelta(minutes=n)
        log.append(AuditEvent(action, "sensor", model, str(n), f"run-{n}", {"n": n}, at))
    return log.events()


def only(problems: list[ChainProblem]) -> ChainProblem:
    assert len(problems) == 1, problems
    return problems[0]


def forged(prev: AuditEvent, event_id: int | None) -> AuditEvent:
    """What an attacker writes: a plausible approval, sealed to a real event, hash recomputed."""
    event = AuditEvent(AuditAction.APPROVAL_GRANTED, "mallory", "toy", "9", at=prev.at)
    return replace(seal(event, prev.hash), id=event_id)


def test_an_intact_trail_has_no_problems(trail):
    assert verify_chain(trail) == []
    assert verify_chain([]) == []


def test_a_gap_in_ids_with_an_intact_link_is_not_a_problem(trail):
    # Postgres sequences skip the id of a rolled-back append.
    renumbered = trail[:3] + [replace(e, id=e.id + 10) for e in trail[3:]]
    assert verify_chain(renumbered) == []


def test_edited_evidence_names_the_edited_event(trail):
    tampered = list(trail)
    tampered[2] = replace(trail[2], evidence={"n": 99})
    problem = only(verify_chain(tampered))
    assert (problem.event_id, problem.kind) == (3, "edited")
    assert problem.detail.startswith("event 3 (model_registered toy v2, 2026-03-01 09:02:00Z)")


def test_an_edited_actor_is_caught_even_deep_in_the_trail(trail):
    tampered = trail[:4] + [replace(trail[4], actor="alice")]
    assert [(p.event_id, p.kind) for p in verify_chain(tampered)] == [(5, "edited")]


def test_a_deleted_middle_event_is_named_with_its_neighbours(trail):
    problem = only(verify_chain(trail[:2] + trail[3:]))
    assert (problem.event_id, problem.kind) == (4, "deleted")
    assert problem.detail.startswith("event(s) 3 deleted after event 2 (retrain_requested churn")
    assert "event 4 (approval_granted churn v3" in problem.detail


def test_several_deleted_events_are_named_as_a_range(trail):
    problem = only(verify_chain(trail[:1] + trail[4:]))
    assert (problem.event_id, problem.kind) == (5, "deleted")
    assert problem.detail.startswith("event(s) 2 to 4 deleted after event 1")


def test_a_deleted_first_event_is_named(trail):
    problem = only(verify_chain(trail[1:]))
    assert (problem.event_id, problem.kind) == (2, "deleted")
    assert problem.detail.startswith("event(s) 1 deleted at the start of the trail")


def test_a_forged_event_inserted_in_the_middle_is_named(trail):
    fake = forged(trail[1], event_id=None)
    problem = only(verify_chain(trail[:2] + [fake] + trail[2:]))
    assert (problem.event_id, problem.kind) == (None, "inserted")
    assert problem.detail.startswith("event None (approval_granted toy v9")
    assert "sealed to event 2" in problem.detail and "event 3 (" in problem.detail


def test_a_forged_event_appended_with_the_next_id_but_sealed_back_is_named(trail):
    # What a database INSERT produces: the next id, sealed to an earlier event to backdate it.
    fake = forged(trail[1], event_id=6)
    problem = only(verify_chain([*trail, fake]))
    assert (problem.event_id, problem.kind) == (6, "inserted")
    assert "which event 3 (" in problem.detail


def test_honest_appends_after_a_forged_event_are_not_blamed(trail):
    fake = forged(trail[1], event_id=6)
    honest = replace(seal(AuditEvent(AuditAction.PROMOTED, "sensor", "toy"), fake.hash), id=7)
    problem = only(verify_chain([*trail, fake, honest]))
    assert (problem.event_id, problem.kind) == (6, "inserted")


def test_an_event_rewritten_and_resealed_is_named_as_inserted(trail):
    resealed = seal(replace(trail[2], evidence={"n": 99}, hash=None), trail[1].hash)
    problem = only(verify_chain(trail[:2] + [resealed] + trail[3:]))
    assert (problem.event_id, problem.kind) == (3, "inserted")
    assert "re-sealed" in problem.detail


def test_a_forged_first_event_is_named(trail):
    fake = forged(trail[0], event_id=1)
    problem = only(verify_chain([fake]))
    assert (problem.event_id, problem.kind) == (1, "inserted")


def test_swapped_events_are_both_named_as_reordered(trail):
    swapped = [*trail[:2], replace(trail[3], id=3), replace(trail[2], id=4), trail[4]]
    problems = verify_chain(swapped)
    assert [(p.event_id, p.kind) for p in problems] == [(3, "reordered"), (4, "reordered")]
