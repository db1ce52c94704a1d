"""In-process Dagster runs of one toy model on a test instance, MLflow replaced by the fake."""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.profiles import fit_reference, save_reference
from orchestrator.adapters.partition_store import PartitionStore, write_parquet_atomically
from orchestrator.components import build_model_definitions
from orchestrator.core.registry import InMemoryModelRegistry
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, DriftgateHomeResource
from tests.conftest import small_spec

START = dt.date(2026, 1, 1)


def day(n: int) -> str:
    """Partition key of day n (1-based) of the toy scenario."""
    return (START + dt.timedelta(days=n - 1)).isoformat()


def toy_day(n: int, rows: int = 1000, shift: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(n)
    x1 = rng.normal(loc=shift, size=rows)
    features = pd.DataFrame(
        {
            "request_id": [f"{day(n)}-{i}" for i in range(rows)],
            "timestamp": pd.Timestamp(day(n), tz="UTC")
            + pd.to_timedelta(np.sort(rng.integers(0, 86_400, rows)), unit="s"),
            "x1": x1,
            "x2": rng.normal(size=rows),
            "x3": rng.normal(size=rows),
            "color": rng.choice(["red", "green", "blue"], rows),
            "shop": rng.choice(["a", "b"], rows),
        }
    )
    label = (x1 - shift + rng.normal(scale=0.7, size=rows) > 0).astype(int)
    return features, pd.DataFrame({"request_id": features["request_id"], "label": label})


class FakeRegistryResource:
    """Stands in for RegistryResource: hands out one shared in-memory registry."""

    def __init__(self) -> None:
        self.fake = InMemoryModelRegistry()

    def registry(self) -> InMemoryModelRegistry:
        return self.fake


@dataclass
class ToyModel:
    spec: MonitoredModelSpec
    names: ModelNames
    home: Path
    store: PartitionStore
    registry: FakeRegistryResource
    defs: dg.Definitions
    instance: dg.DagsterInstance

    def land(self, n: int, shift: float = 0.0, labels: bool = True) -> None:
        features, truth = toy_day(n, shift=shift)
        write_parquet_atomically(features, self.store.source_path("features", day(n)))
        if labels:
            write_parquet_atomically(truth, self.store.source_path("labels", day(n)))

    def materialize_day(self, n: int, shift: float = 0.0) -> dg.ExecuteInProcessResult:
        self.land(n, shift)
        return self.run_monitor(n)

    def run_monitor(self, n: int, evaluated_at: str | None = None) -> dg.ExecuteInProcessResult:
        """The daily job for day n, evaluated by default at 02:00 UTC the next morning."""
        morning = f"{(START + dt.timedelta(days=n)).isoformat()}T02:00:00+00:00"
        return self.defs.resolve_job_def(self.names.monitor_job).execute_in_process(
            instance=self.instance,
            partition_key=day(n),
            raise_on_error=False,
            tags={"driftgate/evaluated_at": evaluated_at or morning},
        )


@pytest.fixture
def toy(tmp_path) -> ToyModel:
    spec = small_spec()
    registry = FakeRegistryResource()
    resources = {
        "driftgate_home": DriftgateHomeResource(home=str(tmp_path)),
        "model_registry": dg.ResourceDefinition.hardcoded_resource(registry),
        "audit": AuditResource(home=str(tmp_path)),
    }
    defs = dg.Definitions.merge(build_model_definitions(spec), dg.Definitions(resources=resources))
    store = DriftgateHomeResource(home=str(tmp_path)).store(spec)
    with dg.instance_for_test() as instance:
        model = ToyModel(spec, ModelNames(spec.name), tmp_path, store, registry, defs, instance)
        for n in range(1, 6):  # the reference window, already in the feature table
            features, _ = toy_day(n)
            model.land(n)
            store.write_table("feature_table", features, day(n))
        reference = [day(n) for n in range(1, 6)]
        save_reference(store, fit_reference(spec, store, reference), reference)
        yield model
