import os

import pytest

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from orchestrator.core.spec import MonitoredModelSpec  # noqa: E402


def small_spec(**overrides) -> MonitoredModelSpec:
    """A three-numerical, two-categorical model, small enough for fast tests."""
    attributes = {
        "name": "toy",
        "source": {
            "features_path": "landing/toy/features/{partition}.parquet",
            "labels_path": "landing/toy/labels/{partition}.parquet",
        },
        "partitions_start": "2026-01-01",
        "label_column": "label",
        "features": [
            {"name": "x1", "kind": "numerical", "min_value": -100, "max_value": 100},
            {"name": "x2", "kind": "numerical"},
            {"name": "x3", "kind": "numerical", "max_null_fraction": 0.5},
            {"name": "color", "kind": "categorical", "allowed_values": ["red", "green", "blue"]},
            {"name": "shop", "kind": "categorical"},
        ],
        "segments": ["shop"],
        "reference_window": ["2026-01-01", "2026-01-05"],
        "retrain": {"cooldown_days": 3, "min_new_labelled_rows": 300, "training_window_days": 3},
        "approval": {"approvers": ["alice", "bob"]},
    }
    attributes.update(overrides)
    return MonitoredModelSpec.model_validate(attributes)


@pytest.fixture
def spec() -> MonitoredModelSpec:
    return small_spec()


def register_version(registry, audit, model: str, tags: dict, model_object=None) -> str:
    """Register a version as driftgate's retraining job does: in the registry, and audited
    with its trigger and gates (the evidence approval and promotion trust)."""
    from orchestrator.core.audit import AuditAction, AuditEvent

    version = registry.log_model(
        model,
        model_object if model_object is not None else object(),
        metrics={},
        params={},
        tags=tags,
    )
    evidence = {"triggered_by": version.tags.get("triggered_by", "unknown"), "gates": version.gates}
    audit.append(
        AuditEvent(
            AuditAction.MODEL_REGISTERED,
            evidence["triggered_by"],
            model,
            version.version,
            tags.get("dagster_run_id"),
            evidence,
        )
    )
    return version.version
