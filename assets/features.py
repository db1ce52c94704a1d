"""The daily feature table: one partition of model inputs as landed, frozen as Parquet."""

import datetime as dt

import dagster as dg
import pandas as pd

from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.naming import ModelNames
from orchestrator.resources import DriftgateHomeResource


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(str(name), str(dtype)) for name, dtype in frame.dtypes.items()]
    )


def stale_day_artifacts(store: PartitionStore, day: str) -> list:
    """What was derived from a day's rows: its profile and its multivariate sample."""
    return [store.artifact_path("feature_profile", day), store.table_path("feature_sample", day)]


def build_feature_table(
    spec: MonitoredModelSpec, names: ModelNames, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.feature_table,
        partitions_def=partitions_def,
        group_name=spec.name,
        kinds={"parquet"},
        # Evaluated by the daemon from wall-clock time, so data that stops landing is flagged
        # even though no run (and so no freshness check) happens.
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=dt.timedelta(hours=spec.freshness.max_age_hours)
        ),
        description=f"{spec.name}: one day of model inputs as landed, frozen as Parquet so every "
        "check and every training run can be traced to the exact rows it saw.",
    )
    def feature_table(
        context: dg.AssetExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.MaterializeResult:
        store = driftgate_home.store(spec)
        frame = store.read_source("features", context.partition_key)
        # A re-landed day is judged afresh: its old profile must not stand in for rows that
        # may now be rejected.
        for stale in stale_day_artifacts(store, context.partition_key):
            stale.unlink(missing_ok=True)
        path = store.write_table("feature_table", frame, context.partition_key)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "dagster/column_schema": column_schema(frame),
                "path": dg.MetadataValue.path(str(path)),
            }
        )

    return feature_table
