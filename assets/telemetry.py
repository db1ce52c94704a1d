"""Telemetry assets: what the serving model did (prediction events, SLAs) and how good it was
(realized once labels arrive, estimated before they do).

Prediction events land as Parquet parts under `<home>/data/<model>/telemetry` (written by
`PredictionLogger` or `driftgate telemetry ingest`, validated and redacted before they touch
disk); the daily `prediction_events` partition compacts them. Labels arrive in their own daily
partitions, keyed by request id, and attach to predictions up to `label_lookback_days` older.
"""

import dataclasses
import datetime as dt
import json

import dagster as dg
import pandas as pd

from orchestrator.adapters.partition_store import PartitionStore, write_parquet_atomically
from orchestrator.core.errors import DataError
from orchestrator.core.labels import (
    LABEL_PARTITION,
    PREDICTION_PARTITION,
    attach_labels,
    join_labels,
)
from orchestrator.core.performance import (
    PerformanceReference,
    estimated_table,
    performance_table,
)
from orchestrator.core.profile import write_atomically
from orchestrator.core.registry import CHAMPION, ModelRegistry
from orchestrator.core.spec import MonitoredModelSpec, date_range
from orchestrator.core.telemetry import sla_statistics
from orchestrator.core.training import score_model, split_holdout
from orchestrator.metadata import day_span, frame_table
from orchestrator.naming import ModelNames
from orchestrator.resources import DriftgateHomeResource, RegistryResource

EVENTS = "prediction_events"
SLA = "sla_metrics"
LABELS = "labels"
ORPHANS = "labels_quarantine"
REALIZED = "realized_performance"
ESTIMATED = "estimated_performance"


def _days(first: dt.date, last: dt.date, available: list[str]) -> list[str]:
    wanted = {d.isoformat() for d in date_range(first, last)}
    return [p for p in available if p in wanted]


def lookback(spec: MonitoredModelSpec, day: str) -> tuple[dt.date, dt.date]:
    last = dt.date.fromisoformat(day)
    return last - dt.timedelta(days=spec.performance.label_lookback_days), last


def predictions_in(store: PartitionStore, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Request ids of the prediction events of first..last, with their partition."""
    frames = [
        pd.read_parquet(store.table_path(EVENTS, p), columns=["request_id"]).assign(
            **{PREDICTION_PARTITION: p}
        )
        for p in _days(first, last, store.partitions(EVENTS))
    ]
    if not frames:
        return pd.DataFrame(columns=["request_id", PREDICTION_PARTITION])
    return pd.concat(frames, ignore_index=True)


def attached_labels(store: PartitionStore, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Labels attached by the `labels` partitions that arrived first..last."""
    frames = [store.read_table(LABELS, p) for p in _days(first, last, store.partitions(LABELS))]
    if not frames:
        return pd.DataFrame(columns=["request_id", "label", PREDICTION_PARTITION, LABEL_PARTITION])
    return pd.concat(frames, ignore_index=True)


# -- the performance reference: the champion's holdout, scored --------------------------------


def _reference_path(store: PartitionStore, version: str):
    return store.artifact_path("performance_reference", f"v{version}").with_suffix(".json")


def fit_performance_reference(
    spec: MonitoredModelSpec, store: PartitionStore, registry: ModelRegistry
) -> tuple[PerformanceReference, dict]:
    """Score the champion on the newest `holdout_fraction` of the data it was trained on (rows
    it did not learn from) and learn the performance thresholds and the CBPE calibration."""
    from assets.training import labelled_frame

    champion = registry.get_alias(spec.name, CHAMPION)
    if champion is None or not champion.training_partitions:
        raise DataError(f"{spec.name}: no champion with recorded training partitions to score")
    frame, _ = labelled_frame(spec, store, champion.training_partitions)
    _, holdout = split_holdout(frame, spec, spec.retrain.holdout_fraction)
    scores = score_model(registry.load_model(spec.name, champion.version), holdout, spec)
    reference = PerformanceReference(spec.performance).fit(
        holdout[spec.label_column].to_numpy(), scores
    )
    manifest = {"version": champion.version, "partitions": champion.training_partitions}
    return reference, manifest


def save_performance_reference(
    store: PartitionStore, reference: PerformanceReference, manifest: dict
) -> None:
    """One reference per version: a day's predictions are judged against the reference of
    the version that made them, even after another version took over."""
    payload = {**manifest, "reference": reference.to_dict()}
    write_atomically(_reference_path(store, manifest["version"]), json.dumps(payload).encode())


def load_performance_references(
    spec: MonitoredModelSpec, store: PartitionStore, versions: list[str]
) -> dict[str, PerformanceReference]:
    """The stored references of those of `versions` that served as champion (others have
    none: their rows are reported, not judged); an unreadable one is a DataError."""
    references = {}
    for version in versions:
        path = _reference_path(store, version)
        if not path.exists():
            continue
        try:
            payload = json.loads(path.read_text())
            references[version] = PerformanceReference.from_dict(payload["reference"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{spec.name}: unreadable performance reference {path}: {e}") from e
    return references


# -- assets ---------------------------------------------------------------------------------


def build_telemetry_assets(
    spec: MonitoredModelSpec, names: ModelNames, daily: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    assets = [
        _prediction_events(spec, names, daily),
        _sla_metrics(spec, names, daily),
        _labels(spec, names, daily),
        _performance_reference(spec, names),
        _realized_performance(spec, names, daily),
    ]
    if spec.performance.estimates:
        assets.append(_estimated_performance(spec, names, daily))
    return assets


def _prediction_events(spec, names: ModelNames, daily) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.prediction_events,
        partitions_def=daily,
        group_name=spec.name,
        kinds={"parquet"},
        description=f"{spec.name}: one day of prediction events (UTC), as the serving "
        "process logged them: validated, identifiers hashed, personal data dropped.",
    )
    def prediction_events(
        context: dg.AssetExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.MaterializeResult:
        day, telemetry = context.partition_key, driftgate_home.telemetry(spec)
        events = telemetry.read_events(day).to_pandas()
        if events.empty:
            raise DataError(f"{spec.name}: no prediction events landed for {day}")
        # Parts are written in time order: a request logged twice keeps its last record.
        deduped = events.drop_duplicates("request_id", keep="last")
        driftgate_home.store(spec).write_table(EVENTS, deduped, day)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(deduped),
                "duplicates_dropped": len(events) - len(deduped),
                "quarantined": telemetry.quarantined_rows(day),
                "dropped_by_logger": telemetry.dropped(day),
                "model_versions": ", ".join(sorted(deduped["model_version"].unique())),
            }
        )

    return prediction_events


def _sla_metrics(spec, names: ModelNames, daily) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.sla_metrics,
        deps=[names.prediction_events],
        partitions_def=daily,
        group_name=spec.name,
        kinds={"parquet"},
        description=f"{spec.name}: service levels per model version and segment: events, "
        "error, timeout and fallback rates, p50/p95/p99 latency.",
    )
    def sla_metrics(
        context: dg.AssetExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.MaterializeResult:
        store, day = driftgate_home.store(spec), context.partition_key
        events = store.read_table(EVENTS, day)
        stats = sla_statistics(events, spec.segments)
        store.write_table(SLA, stats, day)
        overall = sla_statistics(events.assign(model_version="(all)"), []).iloc[0]
        return dg.MaterializeResult(
            metadata={
                "sla": frame_table(stats),
                **{
                    k: float(overall[k])
                    for k in overall.index
                    if k not in ("model_version", "segment")
                },
            }
        )

    return sla_metrics


def _labels(spec, names: ModelNames, daily) -> dg.AssetsDefinition:
    window = dg.TimeWindowPartitionMapping(
        start_offset=-spec.performance.label_lookback_days,
        end_offset=0,
        allow_nonexistent_upstream_partitions=True,
    )

    @dg.asset(
        key=names.labels,
        deps=[dg.AssetDep(names.prediction_events, partition_mapping=window)],
        partitions_def=daily,
        group_name=spec.name,
        kinds={"parquet"},
        description=f"{spec.name}: the labels that arrived this day, attached by request id to "
        f"predictions of the {spec.performance.label_lookback_days} days before. A label sent "
        "twice keeps its last value; labels for unknown requests are quarantined.",
    )
    def labels(
        context: dg.AssetExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.MaterializeResult:
        store, day = driftgate_home.store(spec), context.partition_key
        first, last = lookback(spec, day)
        arrived = (
            store.read_source("labels", day)
            if store.has_source("labels", day)
            else pd.DataFrame(columns=[spec.request_id_column, spec.label_column])
        )
        arrival = attach_labels(
            arrived,
            last,
            predictions_in(store, first, last),
            request_id=spec.request_id_column,
            label=spec.label_column,
            lookback_days=spec.performance.label_lookback_days,
            earlier=attached_labels(store, first, last - dt.timedelta(days=1)),
            measured=context.instance.get_materialized_partitions(names.realized_performance),
            task=spec.performance.task,
        )
        attached = arrival.attached.rename(
            columns={spec.request_id_column: "request_id", spec.label_column: "label"}
        )
        store.write_table(LABELS, attached, day)
        write_parquet_atomically(arrival.orphans, store.table_path(ORPHANS, day))
        return dg.MaterializeResult(
            metadata={
                "received": arrival.received,
                "attached": arrival.attached_rows,
                "duplicates": arrival.duplicates,
                "late": arrival.late,
                "orphans": arrival.orphan_rows,
                "prediction_partitions": ",".join(arrival.prediction_partitions),
            }
        )

    return labels


def _performance_reference(spec, names: ModelNames) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.performance_reference,
        deps=[names.champion_model, names.feature_table],
        group_name=spec.name,
        kinds={"json"},
        description=f"{spec.name}: the champion scored on the newest rows of its training "
        "data it did not learn from: the learned performance thresholds (mean ± k·std over "
        "reference chunks) and the calibration CBPE estimates with. Rebuilt on promotion.",
    )
    def performance_reference(
        driftgate_home: DriftgateHomeResource, model_registry: RegistryResource
    ) -> dg.MaterializeResult:
        store = driftgate_home.store(spec)
        reference, manifest = fit_performance_reference(spec, store, model_registry.registry())
        save_performance_reference(store, reference, manifest)
        return dg.MaterializeResult(
            metadata={
                "version": manifest["version"],
                "partitions": day_span(manifest["partitions"]),
                "dagster/row_count": reference.rows_,
                "thresholds": frame_table(
                    pd.DataFrame([dataclasses.asdict(b) for b in reference.bounds_.values()])
                ),
            },
            data_version=dg.DataVersion(f"v{manifest['version']}"),
        )

    return performance_reference


def _realized_performance(spec, names: ModelNames, daily) -> dg.AssetsDefinition:
    window = dg.TimeWindowPartitionMapping(
        start_offset=0,
        end_offset=spec.performance.label_lookback_days,
        allow_nonexistent_upstream_partitions=True,
    )

    @dg.asset(
        key=names.realized_performance,
        deps=[
            names.prediction_events,
            dg.AssetDep(names.labels, partition_mapping=window),
            names.performance_reference,
        ],
        partitions_def=daily,
        group_name=spec.name,
        kinds={"parquet"},
        description=f"{spec.name}: the quality of one day's predictions, per model version and "
        "segment, from the labels that have arrived so far. Measured again when more arrive.",
    )
    def realized_performance(
        context: dg.AssetExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.MaterializeResult:
        store, day = driftgate_home.store(spec), context.partition_key
        first = dt.date.fromisoformat(day)
        last = first + dt.timedelta(days=spec.performance.label_lookback_days)
        joined = join_labels(
            store.read_table(EVENTS, day),
            attached_labels(store, first, last),
            request_id="request_id",
            label="label",
        )
        table = performance_table(joined.labelled, spec.segments, spec.performance, kind="realized")
        store.write_table(REALIZED, table, day)
        return dg.MaterializeResult(
            metadata={
                "labelled_rows": joined.labelled_rows,
                "unlabelled_rows": joined.unlabelled_rows,
                "superseded_labels": joined.superseded,
                "performance": frame_table(table),
                **headline(table),
            }
        )

    return realized_performance


def _estimated_performance(spec, names: ModelNames, daily) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.estimated_performance,
        deps=[names.prediction_events, names.performance_reference],
        partitions_def=daily,
        group_name=spec.name,
        kinds={"parquet"},
        description=f"{spec.name}: the quality of one day's predictions estimated before any "
        "label arrives (confidence-based performance estimation on the champion's calibration).",
    )
    def estimated_performance(
        context: dg.AssetExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.MaterializeResult:
        store, day = driftgate_home.store(spec), context.partition_key
        events = store.read_table(EVENTS, day)
        versions = sorted(events["model_version"].unique())
        references = load_performance_references(spec, store, versions)
        if not references:
            raise DataError(f"{spec.name}: no performance reference for versions {versions}")
        table = estimated_table(events, spec.segments, spec.performance, references)
        store.write_table(ESTIMATED, table, day)
        return dg.MaterializeResult(metadata={"performance": frame_table(table), **headline(table)})

    return estimated_performance


def headline(table: pd.DataFrame) -> dict[str, float]:
    """The busiest version's whole-population metrics, as numbers the UI plots over days."""
    overall = table[table["segment"] == "all"]
    if overall.empty:
        return {}
    row = overall.sort_values("rows", ascending=False).iloc[0]
    return {
        k: float(row[k])
        for k in overall.columns
        if k not in ("model_version", "segment", "kind") and pd.notna(row[k])
    }
