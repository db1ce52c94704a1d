"""Core results -> Dagster metadata and check results, in one place."""

import dagster as dg
import pandas as pd

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


def day_span(days: list[str]) -> str:
    """ "2026-01-01..2026-01-14 (14 days)"."""
    count = f"{len(days)} day" if len(days) == 1 else f"{len(days)} days"
    return f"{days[0]}..{days[-1]} ({count})"


def drift_metadata(report: DriftReport, window: list[str], reference: str) -> dict:
    """The drift check's metadata: every method's row, the window, worst segments first, and
    the joint-distribution result."""
    metadata = {
        "drift": drift_table(report),
        "window": day_span(window),
        "reference_partitions": reference,
        "dagster/row_count": report.n_current,
    }
    if report.segments:
        metadata["segments"] = _segments_markdown(report)
        metadata["drifted_segments"] = ", ".join(report.drifted_segments) or "none"
    if report.multivariate is not None:
        if report.multivariate.statistic is not None:
            metadata["multivariate_auroc"] = report.multivariate.statistic
        metadata["multivariate"] = report.multivariate.reason
    return metadata


def _segments_markdown(report: DriftReport) -> dg.MetadataValue:
    lines = ["| segment | rows | verdict | drifted columns |", "|---|---|---|---|"]
    lines += [
        f"| {s.segment} | {s.n_current} | {s.verdict.value} | {', '.join(s.drifted_columns)} |"
        for s in report.ranked_segments()[:20]
    ]
    return dg.MetadataValue.md("\n".join(lines))


def frame_table(frame: pd.DataFrame, limit: int = 200) -> dg.MetadataValue:
    """A small result table (SLA statistics, performance per segment) as a UI table.

    Missing values stay None: NaN would serialize as invalid JSON.
    """
    columns = [dg.TableColumn(str(name), _inferred_type(frame[name])) for name in frame.columns]
    shown = frame.head(limit).astype(object).where(frame.head(limit).notna(), None)
    rows = [
        dg.TableRecord(dict(zip(map(str, shown.columns), values, strict=True)))
        for values in shown.itertuples(index=False)
    ]
    return dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=columns))


def _column_type(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "string"


def _inferred_type(column: pd.Series) -> str:
    """Object columns holding numbers and None (undefined metrics) are numbers to the UI."""
    if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) in (
        "floating",
        "integer",
        "mixed-integer-float",
    ):
        return "float"
    return _column_type(column.dtype)
