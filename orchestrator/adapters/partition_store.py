"""Daily partitions as Parquet files: the landed source files and driftgate's own tables."""

import datetime as dt
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from orchestrator.core.errors import DataError
from orchestrator.core.labels import LABEL_PARTITION, labelled_count
from orchestrator.core.spec import MonitoredModelSpec, date_range


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class PartitionStore:
    """Paths and reads for one monitored model's partitions under a data root.

    `features_path` and `labels_path` are templates with `{partition}` (YYYY-MM-DD); relative
    templates resolve against `root`.
    """

    def __init__(
        self,
        root: Path,
        model: str,
        features_path: str,
        labels_path: str,
        *,
        request_id: str = "request_id",
        label: str = "label",
        label_lookback_days: int = 14,
    ):
        self.root = root
        self.model = model
        self._templates = {"features": features_path, "labels": labels_path}
        self.request_id = request_id
        self.label = label
        self.label_lookback_days = label_lookback_days

    @classmethod
    def for_model(cls, root: Path, spec: MonitoredModelSpec) -> "PartitionStore":
        return cls(
            root,
            spec.name,
            spec.source.features_path,
            spec.source.labels_path,
            request_id=spec.request_id_column,
            label=spec.label_column,
            label_lookback_days=spec.performance.label_lookback_days,
        )

    def source_path(self, kind: str, partition: str) -> Path:
        path = Path(self._templates[kind].format(partition=partition, model=self.model))
        return path if path.is_absolute() else self.root / path

    def read_source(self, kind: str, partition: str) -> pd.DataFrame:
        path = self.source_path(kind, partition)
        if not path.exists():
            raise DataError(f"{self.model}: no {kind} file for partition {partition} at {path}")
        return pd.read_parquet(path)

    def has_source(self, kind: str, partition: str) -> bool:
        return self.source_path(kind, partition).exists()

    def table_path(self, table: str, partition: str | None = None) -> Path:
        base = self.root / self.model / table
        return base / f"{partition}.parquet" if partition else base.with_suffix(".parquet")

    def artifact_path(self, name: str, partition: str | None = None) -> Path:
        """Where driftgate keeps a non-tabular artifact (profiles): `<model>/<name>[/<p>].npz`."""
        base = self.root / self.model / name
        return base / f"{partition}.npz" if partition else base.with_suffix(".npz")

    def write_table(self, table: str, frame: pd.DataFrame, partition: str | None = None) -> Path:
        path = self.table_path(table, partition)
        write_parquet_atomically(frame, path)
        return path

    def read_table(self, table: str, partition: str | None = None) -> pd.DataFrame:
        path = self.table_path(table, partition)
        if not path.exists():
            where = f"partition {partition}" if partition else "its only version"
            raise DataError(f"{self.model}: table {table!r} has no {where} at {path}")
        return pd.read_parquet(path)

    def read_partitions(self, table: str, partitions: Iterable[str]) -> pd.DataFrame:
        frames = [self.read_table(table, p) for p in partitions]
        if not frames:
            raise DataError(f"{self.model}: no partitions of {table!r} requested")
        return pd.concat(frames, ignore_index=True)

    def partitions(self, table: str) -> list[str]:
        folder = self.root / self.model / table
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.exists() else []

    def arrived_labels(self, first: dt.date, last: dt.date) -> pd.DataFrame:
        """Every label file that arrived from `first` to `last`, each row marked with its
        arrival partition (so a later write of the same request id wins)."""
        frames = []
        for day in date_range(first, last):
            if self.has_source("labels", day.isoformat()):
                frame = self.read_source("labels", day.isoformat())
                missing = {self.request_id, self.label} - set(frame.columns)
                if missing:
                    path = self.source_path("labels", day.isoformat())
                    raise DataError(
                        f"{self.model}: label file {path} lacks columns {sorted(missing)}"
                    )
                frame = frame[[self.request_id, self.label]].assign(
                    **{LABEL_PARTITION: day.isoformat()}
                )
                frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=[self.request_id, self.label, LABEL_PARTITION])
        return pd.concat(frames, ignore_index=True)

    def labels_for(self, first: dt.date, last: dt.date) -> pd.DataFrame:
        """Labels for predictions made first..last: those that arrived from `first` up to the
        lookback after `last`."""
        return self.arrived_labels(first, last + dt.timedelta(days=self.label_lookback_days))

    def labelled_rows(self, first: dt.date, last: dt.date) -> int:
        """Feature rows of partitions first..last whose label has arrived."""
        days = [d.isoformat() for d in date_range(first, last)]
        paths = [self.table_path("feature_table", d) for d in days]
        existing = [p for p in paths if p.exists()]
        if not existing:
            return 0
        ids = pd.concat(
            [pd.read_parquet(p, columns=[self.request_id]) for p in existing], ignore_index=True
        )
        return labelled_count(ids[self.request_id], self.labels_for(first, last), self.request_id)
