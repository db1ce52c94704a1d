"""The layout of DRIFTGATE_HOME: one folder holds the embedded default's whole state."""

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".driftgate"


@dataclass(frozen=True)
class HomeLayout:
    root: Path

    @classmethod
    def resolve(cls, explicit: str | None = None) -> "HomeLayout":
        """`explicit`, else $DRIFTGATE_HOME, else ./.driftgate; read when called."""
        return cls(Path(explicit or os.environ.get("DRIFTGATE_HOME") or DEFAULT_HOME).resolve())

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow" / "mlflow.db"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlflow" / "artifacts"

    @property
    def audit_db(self) -> Path:
        return self.root / "audit.db"

    @property
    def data(self) -> Path:
        return self.root / "data"
