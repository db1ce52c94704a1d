"""Register, tag, approve, promote on a real MLflow registry; refusals leave it unchanged."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from orchestrator.core.audit import AuditAction, AuditEvent, InMemoryAuditLog
from orchestrator.core.errors import PromotionRefused, RegistryError
from orchestrator.core.registry import CHALLENGER, CHAMPION
from orchestrator.governance import Governance

pytestmark = pytest.mark.integration
PASSING = {"gate.training_data_contract": "pass", "gate.evaluation": "pass"}


def fitted_model():
    x = np.random.default_rng(0).normal(size=(60, 2))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def audited(registry, audit, **tags) -> str:
    """Registered as the retraining job does: the version and its audited registration."""
    version = register(registry, **tags)
    evidence = {"triggered_by": version.tags["triggered_by"], "gates": version.gates}
    audit.append(
        AuditEvent(
            AuditAction.MODEL_REGISTERED,
            evidence["triggered_by"],
            "toy",
            version.version,
            "run-abc",
            evidence,
        )
    )
    return version.version


def register(registry, **tags):
    lineage = {
        "dagster_run_id": "run-abc",
        "training_partitions": "2026-01-01,2026-01-02",
        "training_data_hash": "f00d",
        "code_version": "test",
        "trigger": "drift",
        "triggered_by": "sensor:retrain_toy_on_drift",
        **tags,
    }
    return registry.log_model(
        "toy",
        fitted_model(),
        metrics={"holdout_roc_auc": 0.8},
        params={"rows_train": "60"},
        tags=lineage,
    )


def test_register_records_lineage_tags_metrics_and_loads_back(mlflow_registry):
    version = register(mlflow_registry)
    assert version.version == "1"
    assert version.tags["dagster_run_id"] == "run-abc"
    assert version.training_partitions == ["2026-01-01", "2026-01-02"]
    assert version.metrics["holdout_roc_auc"] == pytest.approx(0.8)
    run = mlflow_registry.client.get_run(version.run_id)
    assert run.data.tags["dagster_run_id"] == "run-abc"
    model = mlflow_registry.load_model("toy", "1")
    assert model.predict(np.array([[1.0, 0.0]]))[0] == 1


def test_every_version_must_carry_a_dagster_run_id(mlflow_registry):
    with pytest.raises(RegistryError, match="dagster_run_id"):
        mlflow_registry.log_model("toy", fitted_model(), metrics={}, params={}, tags={})


def test_approve_and_promote_move_the_champion_alias(spec, mlflow_registry):
    audit = InMemoryAuditLog()
    governance = Governance(spec, mlflow_registry, audit)
    first = audited(mlflow_registry, audit, **PASSING)
    governance.approve(first, "alice", "first model")
    governance.promote(first, "sensor", "run-1")
    second = audited(mlflow_registry, audit, **PASSING)
    governance.approve(second, "bob", "retrained on drift")
    governance.promote(second, "sensor", "run-2")
    champion = mlflow_registry.get_alias("toy", CHAMPION)
    assert champion.version == second
    assert champion.tags["approved_by"] == "bob"
    assert champion.tags["replaced_version"] == first
    assert CHAMPION not in mlflow_registry.get_version("toy", first).aliases
    stages = {v.current_stage for v in mlflow_registry.client.search_model_versions("name='toy'")}
    assert stages <= {"None", None}  # aliases only, never registry stages


@pytest.mark.parametrize(
    ("tags", "approve", "reason"),
    [
        (PASSING, False, "it has no approval"),
        ({"gate.evaluation": "pass"}, False, "'training_data_contract' has no audited result"),
        # approved while passing, then the gate tag is edited to fail before promotion
        (PASSING, True, "tag gate.evaluation says 'block'"),
    ],
)
def test_refused_promotion_leaves_the_champion(spec, mlflow_registry, tags, approve, reason):
    audit = InMemoryAuditLog()
    governance = Governance(spec, mlflow_registry, audit)
    champion = audited(mlflow_registry, audit, **PASSING)
    governance.approve(champion, "alice", "ok")
    governance.promote(champion, "sensor", None)
    candidate = audited(mlflow_registry, audit, **tags)
    if approve:
        governance.approve(candidate, "bob", "looked fine")
        mlflow_registry.set_tags("toy", candidate, {"gate.evaluation": "block"})
    with pytest.raises(PromotionRefused, match=reason):
        governance.promote(candidate, "sensor", "run-x")
    assert mlflow_registry.get_alias("toy", CHAMPION).version == champion
    assert "promoted_at" not in mlflow_registry.get_version("toy", candidate).tags
    assert audit.events("toy")[-1].action is AuditAction.PROMOTION_REFUSED


def test_promotion_clears_the_challenger_it_promotes(spec, mlflow_registry):
    audit = InMemoryAuditLog()
    governance = Governance(spec, mlflow_registry, audit)
    version = audited(mlflow_registry, audit, **PASSING)
    mlflow_registry.set_alias("toy", CHALLENGER, version)
    governance.approve(version, "alice", "ok")
    governance.promote(version, "sensor", None)
    assert mlflow_registry.get_alias("toy", CHALLENGER) is None
    assert mlflow_registry.get_version("toy", version).aliases == (CHAMPION,)


def test_missing_version_and_alias(mlflow_registry):
    with pytest.raises(RegistryError, match="'toy' has no version '7'"):
        mlflow_registry.get_version("toy", "7")
    register(mlflow_registry)
    assert mlflow_registry.get_alias("toy", CHAMPION) is None
