"""The drift check judges merged windows of daily profiles, with persistence, against a reference
profile that must describe the current champion's training data."""

import dagster as dg
import pytest

from assets.profiles import fit_reference, load_reference, save_reference
from orchestrator.components import build_model_definitions
from orchestrator.core.errors import DataError
from orchestrator.core.profile import Profile
from orchestrator.core.registry import CHAMPION, TAG_TRAINING_PARTITIONS
from orchestrator.evidence import check_in_run
from tests.conftest import small_spec
from tests.wiring.conftest import day


def with_drift_policy(toy, rebuild_reference: bool = True, **drift) -> None:
    """Rebuild the toy model's definitions with another drift policy (same home and instance),
    and by default its reference profile, which records the policy it was built with."""
    toy.spec = small_spec(drift=drift)
    toy.defs = dg.Definitions.merge(
        build_model_definitions(toy.spec), dg.Definitions(resources=toy.defs.resources)
    )
    if rebuild_reference:
        reference = [day(n) for n in range(1, 6)]
        save_reference(toy.store, fit_reference(toy.spec, toy.store, reference), reference)


def test_a_changed_drift_policy_blocks_until_the_reference_is_rebuilt(toy):
    with_drift_policy(toy, rebuild_reference=False, thresholds={"ks": {"warn": 0.2, "error": 0.3}})
    assert not toy.materialize_day(6).success
    with pytest.raises(DataError, match="drift policy or features changed"):
        load_reference(toy.spec, toy.store, toy.registry.fake)


def test_persistence_warns_on_the_first_breach_and_blocks_on_the_second(toy):
    with_drift_policy(toy, persistence={"m": 2, "n": 3})
    first = check_in_run(toy.instance, toy.names.drift_check, toy.materialize_day(6, 1.5).run_id)
    assert first.severity == dg.AssetCheckSeverity.WARN and not first.passed
    reasons = [row.data["reason"] for row in first.metadata["drift"].value.records]
    # Days 4 and 5 have no profile (frozen as reference rows only): no earlier windows.
    assert any("breached in 1 of the last 1 windows, 2 needed" in r for r in reasons)
    second = check_in_run(toy.instance, toy.names.drift_check, toy.materialize_day(7, 1.5).run_id)
    assert second.blocks and second.value("worst_column") == "x1"


def test_a_window_merges_the_daily_profiles(toy):
    with_drift_policy(toy, window_days=3)
    for n in (6, 7):
        toy.materialize_day(n)
    result = toy.materialize_day(8)
    drift = check_in_run(toy.instance, toy.names.drift_check, result.run_id)
    assert drift.passed
    assert drift.value("window") == f"{day(6)}..{day(8)} (3 days)"
    assert drift.value("dagster/row_count") == 3_000
    merged = Profile.merge_all(
        Profile.load(toy.store.artifact_path("feature_profile", day(n))) for n in (6, 7, 8)
    )
    assert merged.n_rows == 3_000


def test_a_stale_reference_profile_blocks_until_it_is_rebuilt(toy):
    partitions = ",".join(day(n) for n in (2, 3, 4))
    version = toy.registry.fake.log_model(
        "toy", object(), metrics={}, params={}, tags={TAG_TRAINING_PARTITIONS: partitions}
    )
    toy.registry.fake.set_alias("toy", CHAMPION, version.version)
    result = toy.materialize_day(6)
    assert not result.success  # feature_profile cannot bin against a reference of other data
    with pytest.raises(DataError, match="champion was trained on .*materialize reference"):
        load_reference(toy.spec, toy.store, toy.registry.fake)

    rebuilt = dg.materialize(
        [a for a in toy.defs.assets if toy.names.reference_profile in a.keys],
        instance=toy.instance,
        resources=toy.defs.resources,
    )
    assert rebuilt.success
    assert load_reference(toy.spec, toy.store, toy.registry.fake).partitions == [
        day(n) for n in (2, 3, 4)
    ]
    drift = check_in_run(toy.instance, toy.names.drift_check, toy.run_monitor(6).run_id)
    assert drift.passed and drift.value("reference_partitions").startswith(day(2))
