"""Feature assets: the daily feature table partition and its per-partition profile."""

import datetime as dt

import dagster as dg
import pandas as pd

from orchestrator.core.spec import FeatureKind, MonitoredModelSpec
from orchestrator.naming import ModelNames
from orchestrator.resources import DriftgateHomeResource


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(str(name), str(dtype)) for name, dtype in frame.dtypes.items()]
    )


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
        path = store.write_table("feature_table", frame, context.partition_key)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "dagster/column_schema": column_schema(frame),
                "path": dg.MetadataValue.path(str(path)),
            }
        )

    return feature_table


def partition_summary(frame: pd.DataFrame, spec: MonitoredModelSpec) -> pd.DataFrame:
    """Per feature: rows, nulls, mean/std (numerical) or distinct count (categorical)."""
    rows = []
    for f in spec.features:
        column = frame[f.name]
        numerical = f.kind is FeatureKind.NUMERICAL
        rows.append(
            {
                "feature": f.name,
                "rows": len(column),
                "nulls": int(column.isna().sum()),
                "mean": float(column.mean()) if numerical else None,
                "std": float(column.std()) if numerical else None,
                "distinct": int(column.nunique()),
            }
        )
    return pd.DataFrame(rows)


def build_feature_profile(
    spec: MonitoredModelSpec, names: ModelNames, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.feature_profile,
        deps=[names.feature_table],
        partitions_def=partitions_def,
        group_name=spec.name,
        kinds={"parquet"},
        description=f"{spec.name}: a per-feature summary of one accepted partition. It is built "
        "only when the blocking gates on the feature table pass.",
    )
    def feature_profile(
        context: dg.AssetExecutionContext, driftgate_home: DriftgateHomeResource
    ) -> dg.MaterializeResult:
        store = driftgate_home.store(spec)
        summary = partition_summary(store.read_table("feature_table", context.partition_key), spec)
        store.write_table("feature_profile", summary, context.partition_key)
        return dg.MaterializeResult(metadata={"features": len(summary)})

    return feature_profile
