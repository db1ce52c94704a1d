"""Safe mode: a failing performance check on the champion rolls it back, through a real run."""

import dagster as dg
import pytest

from orchestrator.components import build_model_definitions
from orchestrator.core.audit import AuditAction
from orchestrator.core.errors import PromotionRefused
from orchestrator.core.registry import CHAMPION
from orchestrator.governance import Governance
from orchestrator.resources import AuditResource
from tests.conftest import register_version, small_spec

PASSING = {"gate.training_data_contract": "pass", "gate.evaluation": "pass"}
CHECK = "toy/realized_performance:realized_performance_within_thresholds"


class Performance(dg.Config):
    failing: bool = False


@dg.asset(
    key=["toy", "realized_performance"],
    check_specs=[
        dg.AssetCheckSpec(
            "realized_performance_within_thresholds", asset=["toy", "realized_performance"]
        )
    ],
)
def realized_performance(config: Performance):
    """Stands in for the champion's performance check (the telemetry work builds the real one)."""
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        passed=not config.failing,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"reason": "roc_auc 0.55 below the learned floor 0.70"},
    )


def safe_toy(toy):
    toy.spec = small_spec(safe_mode={"enabled": True, "check": CHECK})
    toy.defs = dg.Definitions.merge(
        build_model_definitions(toy.spec),
        dg.Definitions(assets=[realized_performance], resources=toy.defs.resources),
    )
    governance = Governance(toy.spec, toy.registry.fake, AuditResource(home=str(toy.home)).log())
    for approver in ("alice", "bob"):
        tags = {**PASSING, "triggered_by": "sensor:retrain_toy_on_drift"}
        version = register_version(toy.registry.fake, governance.audit, "toy", tags)
        governance.approve(version, approver, "ok")
        governance.promote(version, "sensor", None)
    return governance


def measure(toy, failing: bool) -> None:
    result = dg.materialize(
        [realized_performance],
        instance=toy.instance,
        run_config={"ops": {"toy__realized_performance": {"config": {"failing": failing}}}},
        raise_on_error=False,
    )
    assert result.success  # a failed check is recorded on the instance; the run succeeds


def tick(toy):
    sensor = toy.defs.resolve_sensor_def(toy.names.rollback_sensor)
    context = dg.build_sensor_context(
        instance=toy.instance, definitions=toy.defs, resources=toy.defs.resources
    )
    return sensor(context)


def test_a_failing_performance_check_rolls_the_champion_back(toy):
    governance = safe_toy(toy)
    measure(toy, failing=False)
    assert isinstance(tick(toy), dg.SkipReason)
    measure(toy, failing=True)
    request = tick(toy)
    assert isinstance(request, dg.RunRequest) and request.run_key == "safe-mode-toy-v2"
    promote = toy.defs.resolve_job_def(toy.names.promote_job)
    by_hand = promote.execute_in_process(
        instance=toy.instance, run_config=request.run_config, raise_on_error=False
    )
    assert not by_hand.success  # the same run config typed into the launchpad moves nothing
    assert toy.registry.fake.get_alias("toy", CHAMPION).version == "2"
    # The daemon tags the runs a sensor launches with its name.
    sensor_tags = {**request.tags, "dagster/sensor_name": toy.names.rollback_sensor}
    result = promote.execute_in_process(
        instance=toy.instance, run_config=request.run_config, tags=sensor_tags
    )
    assert result.success
    assert toy.registry.fake.get_alias("toy", CHAMPION).version == "1"
    last = governance.audit.events("toy", [AuditAction.ROLLED_BACK])[-1]
    assert last.actor == "sensor:rollback_toy_on_failed_check"
    assert "roc_auc 0.55 below" in last.evidence["reason"]
    assert last.dagster_run_id == result.run_id
    # v1 is champion again; v2, rolled back from, is never a fallback: no second rollback.
    assert "no earlier champion to fall back to" in tick(toy).skip_message


def test_safe_mode_is_off_unless_enabled(toy):
    assert toy.names.rollback_sensor not in {s.name for s in toy.defs.sensors}
    governance = Governance(toy.spec, toy.registry.fake, AuditResource(home=str(toy.home)).log())
    with pytest.raises(PromotionRefused, match="safe mode is not enabled"):
        governance.rollback("sensor:anything", "automatic", automatic=True)
