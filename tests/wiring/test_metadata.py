"""Core results become Dagster metadata the UI can render."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from orchestrator.core.drift import DriftDetector, DriftSpec
from orchestrator.core.gates import evaluate_drift
from orchestrator.core.spec import DriftPolicy, FeatureKind
from orchestrator.metadata import check_result, drift_table


def report_on(current: pd.DataFrame):
    reference = pd.DataFrame({"x": np.random.default_rng(0).normal(size=500)})
    spec = DriftSpec(columns={"x": FeatureKind.NUMERICAL}, policy=DriftPolicy(min_rows=100))
    return DriftDetector(spec).fit(reference).compare(current)


def test_unjudged_rows_stay_in_the_drift_table_with_no_statistic():
    report = report_on(pd.DataFrame({"x": []}))
    table = drift_table(report)
    assert len(table.records) == len(report.to_records()) == 5
    assert all(record.data["statistic"] is None for record in table.records)
    json.dumps([record.data for record in table.records], allow_nan=False)  # valid JSON for the UI


def test_blocking_gate_is_an_error_severity_failure_carrying_its_threshold():
    result = check_result(evaluate_drift(report_on(pd.DataFrame({"x": np.arange(500.0)}))))
    assert not result.passed and result.severity is dg.AssetCheckSeverity.ERROR
    assert result.metadata["verdict"].value == "block"
    assert "threshold.error" in result.metadata
