"""The shipped code location loads: Dagster validates it, and a YAML typo fails naming the field."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_dagster_definitions_validate_passes(tmp_path):
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "DAGSTER_HOME": str(tmp_path),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PATH": str(dagster.parent),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_demo_model_objects_are_defined():
    from orchestrator.definitions import defs

    loaded = defs()
    assert loaded.resolve_sensor_def("retrain_churn_on_drift").job_name == "retrain_churn"
    assert loaded.resolve_sensor_def("promote_churn_on_approval").job_name == "promote_churn"
    checks = {key.name for key in loaded.resolve_asset_graph().asset_check_keys}
    assert checks == {
        "feature_table_is_fresh",
        "feature_table_matches_contract",
        "feature_profile_within_drift_thresholds",
        "training_dataset_matches_contract",
        "candidate_model_not_worse_than_champion",
        "audit_trail_is_intact",
        "sla_metrics_within_sla",
        "realized_performance_within_thresholds",
        "estimated_performance_within_thresholds",
        "realized_performance_agrees_with_estimate",
    }
    assert loaded.resolve_job_def("monitor_churn_features").partitions_def is not None
    # telemetry is on in the demo model: its jobs, sensor and schedule exist
    assert loaded.resolve_sensor_def("measure_churn_on_labels").job_name == (
        "measure_churn_performance"
    )
    predictions = loaded.resolve_job_def("monitor_churn_predictions")
    assert predictions.partitions_def is not None
    assert loaded.resolve_schedule_def("monitor_churn_predictions_schedule") is not None
    promote = loaded.resolve_job_def("promote_churn")
    assert dg.AssetKey(["churn", "performance_reference"]) in (
        promote.asset_layer.executable_asset_keys
    )


def test_a_model_without_telemetry_has_none_of_its_objects(spec):
    from orchestrator.components import build_model_definitions

    built = build_model_definitions(spec)
    keys = {key.to_user_string() for a in built.assets for key in a.keys}
    assert not keys & {"toy/prediction_events", "toy/labels", "toy/realized_performance"}
    assert {s.name for s in built.sensors} == {"retrain_toy_on_drift", "promote_toy_on_approval"}


YAML = """
type: orchestrator.components.MonitoredModel
attributes:
  name: typo
  source: {features_path: "f/{partition}.parquet", labels_path: "l/{partition}.parquet"}
  partitions_start: "2026-01-01"
  features:
    - {name: a, kind: numerical}
    - {name: b, kind: categoricl}
  reference_window: ["2026-01-01", "2026-01-02"]
  approval: {approvers: [alice]}
"""


def test_yaml_typo_fails_at_load_naming_field_and_line(tmp_path, monkeypatch):
    project = tmp_path / "typo_project"
    (project / "defs" / "typo").mkdir(parents=True)
    (project / "__init__.py").write_text("")
    (project / "defs" / "__init__.py").write_text("")
    (project / "defs" / "typo" / "defs.yaml").write_text(YAML)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dg.project]\nroot_module = "typo_project"\ndefs_module = "typo_project.defs"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Exception) as error:
        dg.load_from_defs_folder(path_within_project=project)
    message = "".join(str(e) for e in _chain(error.value))
    assert "features" in message and "kind" in message and "categoricl" in message
    assert "defs.yaml:7" in message  # the `features:` line


def _chain(error: BaseException):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__
