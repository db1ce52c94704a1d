"""The layout of DRIFTGATE_HOME: one folder holds the embedded default's whole state."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".driftgate"
# The instance configuration template at the top of the repository (telemetry off, SQLite).
INSTANCE_TEMPLATE = Path(__file__).resolve().parents[2] / "dagster.yaml"


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

    def telemetry(self, model: str) -> Path:
        """Where one model's prediction events and their quarantine land."""
        return self.data / model / "telemetry"

    def ensure(self) -> "HomeLayout":
        """Create the folders and the Dagster instance configuration if they are missing."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        self.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
        if not (self.dagster_home / "dagster.yaml").exists():
            shutil.copy(INSTANCE_TEMPLATE, self.dagster_home / "dagster.yaml")
        return self

    def activate(self) -> "HomeLayout":
        """Point this process's Dagster, MLflow and driftgate here (creating what is missing)."""
        os.environ.update(self.ensure().environment())
        return self

    def environment(self) -> dict[str, str]:
        """Variables that point Dagster, MLflow and driftgate here, with telemetry off."""
        return {
            "DRIFTGATE_HOME": str(self.root),
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_LOGGING_LEVEL": os.environ.get("MLFLOW_LOGGING_LEVEL", "WARNING"),
        }
