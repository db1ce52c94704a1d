"""The evaluation gate on a real retraining run: a candidate worse than the champion is blocked."""

import pandas as pd

from orchestrator.adapters.partition_store import write_parquet_atomically
from orchestrator.core.registry import CHALLENGER, CHAMPION
from orchestrator.core.training import train_candidate
from orchestrator.evidence import check_in_run
from orchestrator.governance import Governance
from orchestrator.resources import AuditResource
from tests.conftest import register_version
from tests.wiring.conftest import day, toy_day
from tests.wiring.test_retrain_sensor import tick

PASSING = {"gate.training_data_contract": "pass", "gate.evaluation": "pass"}


def seed_champion(toy) -> Governance:
    """v1: trained on the clean reference window, approved and promoted."""
    frames = [
        features.merge(labels, on="request_id") for features, labels in map(toy_day, range(1, 6))
    ]
    model = train_candidate(pd.concat(frames, ignore_index=True), toy.spec)
    partitions = ",".join(day(n) for n in range(1, 6))
    audit = AuditResource(home=str(toy.home)).log()
    tags = {
        "dagster_run_id": "seed",
        "training_partitions": partitions,
        "triggered_by": "seed",
        **PASSING,
    }
    register_version(toy.registry.fake, audit, "toy", tags, model_object=model)
    governance = Governance(toy.spec, toy.registry.fake, audit)
    governance.approve("1", "alice", "seed")
    governance.promote("1", "test", None)
    return governance


def test_candidate_worse_than_champion_is_blocked_and_never_becomes_challenger(toy):
    governance = seed_champion(toy)
    toy.materialize_day(6)
    for n in (7, 8):
        toy.materialize_day(n, shift=1.5)
    # Day 7's labels arrive inverted (a broken labelling job): the candidate learns them.
    _, labels = toy_day(7)
    write_parquet_atomically(
        labels.assign(label=1 - labels["label"]), toy.store.source_path("labels", day(7))
    )
    request = tick(toy).run_requests[0]
    run = toy.defs.resolve_job_def(toy.names.retrain_job).execute_in_process(
        instance=toy.instance,
        run_config=request.run_config,
        tags=request.tags,
        raise_on_error=False,
    )
    evaluation = check_in_run(toy.instance, toy.names.evaluation_check, run.run_id)
    assert evaluation is not None and evaluation.blocks
    assert "worse than the tolerance" in evaluation.reason_text
    candidate = toy.registry.fake.get_version("toy", "2")
    assert candidate.gates["evaluation"] == "block"
    assert toy.registry.fake.get_alias("toy", CHALLENGER) is None
    assert toy.registry.fake.get_alias("toy", CHAMPION).version == "1"
    assert "gate 'evaluation' is block" in governance.decide("2").explain()
