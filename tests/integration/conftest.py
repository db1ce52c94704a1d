"""A real MLflow SQLite registry per test, copied from one database migrated per session."""

import shutil
from pathlib import Path

import pytest

from orchestrator.adapters.home import HomeLayout
from orchestrator.adapters.mlflow_registry import MlflowModelRegistry


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """Creating an MLflow database runs every migration (seconds): do it once per session."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_registry(mlflow_template, tmp_path) -> MlflowModelRegistry:
    database = tmp_path / "mlflow" / "mlflow.db"
    database.parent.mkdir(parents=True)
    shutil.copy(mlflow_template, database)
    return MlflowModelRegistry(f"sqlite:///{database}", tmp_path / "mlflow" / "artifacts")


@pytest.fixture
def home(mlflow_template, tmp_path, monkeypatch) -> HomeLayout:
    """A fresh DRIFTGATE_HOME with a migrated MLflow database, activated for the test."""
    layout = HomeLayout.resolve(str(tmp_path / "home")).ensure()
    shutil.copy(mlflow_template, layout.mlflow_db)
    for name, value in layout.environment().items():
        monkeypatch.setenv(name, value)  # restored after the test; the CLI sets them too
    return layout
