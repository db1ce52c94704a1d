"""Profile assets: the reference profile the champion was trained on, and one profile per day.

Drift is computed from profiles, not rows: a day's profile is counts over the reference's bins,
a window is the merge of its days, and the reference profile is fitted once per champion.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.core.drift import DriftDetector, DriftSpec
from orchestrator.core.errors import DataError
from orchestrator.core.profile import Profile, write_atomically
from orchestrator.core.registry import CHAMPION, ModelRegistry
from orchestrator.core.spec import FeatureKind, MonitoredModelSpec
from orchestrator.metadata import day_span
from orchestrator.naming import ModelNames
from orchestrator.resources import DriftgateHomeResource, RegistryResource


def reference_partitions(spec: MonitoredModelSpec, registry: ModelRegistry) -> list[str]:
    """The champion's training partitions; before any champion, the configured window."""
    champion = registry.get_alias(spec.name, CHAMPION)
    if champion is not None and champion.training_partitions:
        return champion.training_partitions
    return [day.isoformat() for day in spec.reference_days]


@dataclass(frozen=True)
class StoredReference:
    detector: DriftDetector
    partitions: list[str]

    @property
    def span(self) -> str:
        return day_span(self.partitions)


def _manifest_path(store: PartitionStore) -> Path:
    return store.artifact_path("reference_profile").with_suffix(".json")


def fit_reference(
    spec: MonitoredModelSpec, store: PartitionStore, partitions: list[str]
) -> DriftDetector:
    """Fitted on the frozen partitions as Parquet files, streamed: never all in memory."""
    paths = [store.table_path("feature_table", p) for p in partitions]
    return DriftDetector(DriftSpec.for_model(spec)).fit(paths)


def save_reference(store: PartitionStore, detector: DriftDetector, partitions: list[str]) -> None:
    detector.save(store.artifact_path("reference_profile"))
    manifest = {"reference_id": detector.reference_id_, "partitions": partitions}
    write_atomically(_manifest_path(store), json.dumps(manifest).encode())


def load_reference(
    spec: MonitoredModelSpec, store: PartitionStore, registry: ModelRegistry
) -> StoredReference:
    """The stored reference profile, if it describes the data the current champion (or, before
    one, the configured window) was trained on; a stale one is an error, never a silent pass."""
    path = _manifest_path(store)
    if not path.exists():
        raise DataError(f"{spec.name}: no reference profile yet; materialize reference_profile")
    try:
        manifest = json.loads(path.read_text())
        stored, reference_id = list(manifest["partitions"]), manifest["reference_id"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{spec.name}: unreadable reference manifest {path}: {e}") from e
    wanted = reference_partitions(spec, registry)
    if stored != wanted:
        raise DataError(
            f"{spec.name}: the reference profile describes {stored[0]}..{stored[-1]} but the "
            f"champion was trained on {wanted[0]}..{wanted[-1]}; materialize reference_profile"
        )
    detector = DriftDetector.load(store.artifact_path("reference_profile"))
    if detector.reference_id_ != reference_id:
        raise DataError(
            f"{spec.name}: the reference profile and its manifest disagree (interrupted "
            "write?); materialize reference_profile"
        )
    if detector.spec != DriftSpec.for_model(spec):
        raise DataError(
            f"{spec.name}: the drift policy or features changed since the reference profile "
            "was built; materialize reference_profile"
        )
    return StoredReference(detector, stored)


def day_profile(detector: DriftDetector, store: PartitionStore, day: str) -> Profile | None:
    """A day's stored profile, re-profiled from its frozen rows if it was binned on an older
    reference; None when the day has no profile (no data, or its gates rejected it)."""
    path = store.artifact_path("feature_profile", day)
    if not path.exists():
        return None
    profile = Profile.load(path)
    if profile.reference_id == detector.reference_id_:
        return profile
    return detector.profile(store.table_path("feature_table", day))


def day_sample(spec: MonitoredModelSpec, table: Path) -> pd.DataFrame:
    """A bounded random sample of the day's watched columns, kept for the domain classifier
    so that judging a window reads samples, not every row again."""
    frame = pq.read_table(table, columns=spec.feature_names).to_pandas()
    rows = min(len(frame), spec.drift.multivariate.sample_rows)
    return frame.sample(n=rows, random_state=spec.drift.multivariate.seed, ignore_index=True)


def profile_summary(profile: Profile, spec: MonitoredModelSpec) -> dg.MetadataValue:
    rows = []
    for feature in spec.features:
        column = profile.columns.get(feature.name)
        if column is None:
            continue
        numerical = feature.kind is FeatureKind.NUMERICAL
        rows.append(
            dg.TableRecord(
                {
                    "feature": feature.name,
                    "rows": column.n_rows,
                    "nulls": column.n_null,
                    "mean": round(column.mean, 6) if numerical and column.n_values else None,
                    "std": round(column.std, 6) if numerical and column.n_values else None,
                }
            )
        )
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("feature", "string"),
            dg.TableColumn("rows", "int"),
            dg.TableColumn("nulls", "int"),
            dg.TableColumn("mean", "float"),
            dg.TableColumn("std", "float"),
        ]
    )
    return dg.MetadataValue.table(rows, schema=schema)


def build_reference_profile(spec: MonitoredModelSpec, names: ModelNames) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.reference_profile,
        deps=[names.feature_table, names.champion_model],
        group_name=spec.name,
        kinds={"numpy"},
        description=f"{spec.name}: the profile of the data the champion was trained on (before "
        "any champion, the configured reference window): the bins, categories and thresholds "
        "every daily profile is judged against. Rebuilt whenever the champion changes.",
    )
    def reference_profile(
        driftgate_home: DriftgateHomeResource, model_registry: RegistryResource
    ) -> dg.MaterializeResult:
        store = driftgate_home.store(spec)
        partitions = reference_partitions(spec, model_registry.registry())
        detector = fit_reference(spec, store, partitions)
        save_reference(store, detector, partitions)
        version = hashlib.sha256(f"{detector.reference_id_}{partitions}".encode()).hexdigest()
        levels = [t for methods in detector.thresholds_.values() for t in methods.values()]
        learned = sum(t.learned for t in levels)
        return dg.MaterializeResult(
            metadata={
                "reference_id": detector.reference_id_,
                "partitions": day_span(partitions),
                "dagster/row_count": detector.n_reference_,
                "thresholds": f"{learned} learned, {len(levels) - learned} fixed",
                "summary": profile_summary(detector.reference_, spec),
            },
            data_version=dg.DataVersion(version[:16]),
        )

    return reference_profile


def build_feature_profile(
    spec: MonitoredModelSpec, names: ModelNames, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.feature_profile,
        deps=[names.feature_table, names.reference_profile],
        partitions_def=partitions_def,
        group_name=spec.name,
        kinds={"numpy"},
        description=f"{spec.name}: one accepted day summarised as counts over the reference's "
        "bins. Profiles merge exactly, so a window of days is judged without re-reading rows. "
        "Built only when the feature table's blocking gates pass.",
    )
    def feature_profile(
        context: dg.AssetExecutionContext,
        driftgate_home: DriftgateHomeResource,
        model_registry: RegistryResource,
    ) -> dg.MaterializeResult:
        store, day = driftgate_home.store(spec), context.partition_key
        reference = load_reference(spec, store, model_registry.registry())
        table = store.table_path("feature_table", day)
        profile = reference.detector.profile(table)
        profile.save(store.artifact_path("feature_profile", day))
        if spec.drift.multivariate.enabled:
            store.write_table("feature_sample", day_sample(spec, table), day)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": profile.n_rows,
                "reference_id": profile.reference_id,
                "segments": len(profile.segments),
                "summary": profile_summary(profile, spec),
            }
        )

    return feature_profile
