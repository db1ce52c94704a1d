"""The retrain sensor against a real test instance: one run, a stable run_key, then cooldown."""

import dagster as dg

from orchestrator.core.audit import AuditAction
from orchestrator.evidence import check_in_run
from orchestrator.resources import AuditResource
from tests.wiring.conftest import day


def tick(toy, cursor=None):
    sensor = toy.defs.resolve_sensor_def(toy.names.retrain_sensor)
    context = dg.build_sensor_context(
        instance=toy.instance,
        cursor=cursor,
        definitions=toy.defs,
        sensor_name=toy.names.retrain_sensor,
        resources=toy.defs.resources,
    )
    return sensor.evaluate_tick(context)


def test_drift_requests_one_retraining_then_cooldown_suppresses(toy):
    toy.materialize_day(6)
    assert tick(toy).skip_message.startswith("no drift breach")
    toy.materialize_day(7, shift=1.5)
    toy.materialize_day(8, shift=1.5)

    first = tick(toy)
    again = tick(toy, first.cursor)
    assert len(first.run_requests) == len(again.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key == again.run_requests[0].run_key == "retrain-toy-2026-01-07"
    assert request.tags["driftgate/as_of"] == day(8)

    run = toy.defs.resolve_job_def(toy.names.retrain_job).execute_in_process(
        instance=toy.instance,
        run_config=request.run_config,
        tags={**request.tags, "dagster/run_key": request.run_key},
        raise_on_error=False,
    )
    assert run.success
    version = toy.registry.fake.get_version("toy", "1")
    assert version.tags["dagster_run_id"] == run.run_id
    assert version.tags["training_partitions"] == f"{day(7)},{day(8)}"
    assert version.tags["trigger"] == "drift"
    assert version.gates == {"training_data_contract": "pass", "evaluation": "pass"}
    evaluation = check_in_run(toy.instance, toy.names.evaluation_check, run.run_id)
    assert evaluation is not None and evaluation.passed

    toy.materialize_day(9, shift=1.5)
    suppressed = tick(toy, again.cursor)
    assert not suppressed.run_requests
    assert "3-day cooldown covers drift through 2026-01-10" in suppressed.skip_message

    events = AuditResource(home=str(toy.home)).log().events("toy")
    actions = [e.action for e in events if e.action is not AuditAction.DRIFT_BREACH]
    assert actions == [
        AuditAction.RETRAIN_REQUESTED,
        AuditAction.RETRAIN_STARTED,
        AuditAction.GATE_EVALUATED,  # the training data contract
        AuditAction.MODEL_REGISTERED,
        AuditAction.GATE_EVALUATED,  # the evaluation against the champion
        AuditAction.RETRAIN_SUPPRESSED,
    ]
    started = next(e for e in events if e.action is AuditAction.RETRAIN_STARTED)
    assert started.dagster_run_id == run.run_id
    assert started.evidence["run_key"] == request.run_key
    gates = [e.evidence["gate"] for e in events if e.action is AuditAction.GATE_EVALUATED]
    assert gates == ["contract", "evaluation"]


def test_sensor_waits_for_labelled_data_since_drift_onset(toy):
    toy.land(6, shift=1.5, labels=False)
    toy.run_monitor(6)
    result = tick(toy)
    assert not result.run_requests
    assert "0 labelled rows" in result.skip_message and "300 needed" in result.skip_message
