"""Core results -> Dagster metadata and check results, in one place."""

import dagster as dg

from orchestrator.core.drift import DriftReport
from orchestrator.core.gates import ExpectationFailure, GateResult, GateVerdict

_DRIFT_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("segment", "string"),
        dg.TableColumn("column", "string"),
        dg.TableColumn("method", "string"),
        dg.TableColumn("statistic", "float"),
        dg.TableColumn("warn", "float"),
        dg.TableColumn("error", "float"),
        dg.TableColumn("verdict", "string"),
        dg.TableColumn("reason", "string"),
    ]
)


def check_result(result: GateResult, **extra: object) -> dg.AssetCheckResult:
    """PASS passes; WARN fails at WARN severity (visible, not blocking); BLOCK fails at ERROR."""
    severity = (
        dg.AssetCheckSeverity.WARN
        if result.verdict is GateVerdict.WARN
        else dg.AssetCheckSeverity.ERROR
    )
    metadata = {
        "verdict": result.verdict.value,
        "reason": result.reason,
        **{k: v for k, v in result.metrics.items() if v is not None},
        **{f"threshold.{k}": v for k, v in result.threshold.items()},
        **extra,
    }
    return dg.AssetCheckResult(
        passed=result.verdict is GateVerdict.PASS,
        severity=severity,
        metadata=metadata,
        description=result.reason,
    )


def drift_table(report: DriftReport) -> dg.MetadataValue:
    """Every column and method, worst first, as a table the Dagster UI renders."""
    # Unjudged methods keep statistic None: NaN would serialize as invalid JSON and the UI
    # would drop exactly the rows that explain an insufficient-data block.
    rows = [dg.TableRecord(record) for record in report.to_records()]
    return dg.MetadataValue.table(rows, schema=_DRIFT_TABLE_SCHEMA)


def failures_markdown(failures: list[ExpectationFailure]) -> dg.MetadataValue:
    lines = ["| expectation | column | observed |", "|---|---|---|"]
    lines += [f"| {f.expectation} | {f.column or ''} | {f.observed} |" for f in failures]
    return dg.MetadataValue.md("\n".join(lines))
