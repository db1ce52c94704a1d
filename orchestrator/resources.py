"""Dagster resources. They only construct adapters; every decision lives in core."""

import os

import dagster as dg

from orchestrator.adapters.audit_store import SqliteAuditLog
from orchestrator.adapters.home import HomeLayout
from orchestrator.adapters.mlflow_registry import MlflowModelRegistry
from orchestrator.adapters.partition_store import PartitionStore
from orchestrator.adapters.telemetry_store import TelemetryStore
from orchestrator.core.audit import AuditLog
from orchestrator.core.registry import ModelRegistry
from orchestrator.core.spec import MonitoredModelSpec


class DriftgateHomeResource(dg.ConfigurableResource):
    """Where the embedded default keeps its state; empty means $DRIFTGATE_HOME or ./.driftgate."""

    home: str | None = None

    def layout(self) -> HomeLayout:
        return HomeLayout.resolve(self.home)

    def store(self, spec: MonitoredModelSpec) -> PartitionStore:
        return PartitionStore.for_model(self.layout().data, spec)

    def telemetry(self, spec: MonitoredModelSpec) -> TelemetryStore:
        return TelemetryStore(self.layout().telemetry(spec.name))


class RegistryResource(dg.ConfigurableResource):
    """MLflow registry; empty tracking_uri means the SQLite database under DRIFTGATE_HOME."""

    home: str | None = None
    tracking_uri: str | None = None

    def registry(self) -> ModelRegistry:
        layout = HomeLayout.resolve(self.home)
        return MlflowModelRegistry(
            self.tracking_uri or layout.mlflow_tracking_uri, layout.mlflow_artifacts
        )


class AuditResource(dg.ConfigurableResource):
    """The append-only audit log every decision is recorded in.

    url: postgresql://... for the production profile, e.g. `dg.EnvVar("DRIFTGATE_AUDIT_URL")`;
    default: SQLite under DRIFTGATE_HOME.
    """

    home: str | None = None
    url: str | None = None

    def log(self) -> AuditLog:
        # Resolved by Dagster inside runs; used directly (the CLI), the EnvVar is still a name.
        url = self.url.get_value() if isinstance(self.url, dg.EnvVar) else self.url
        if url:
            from orchestrator.adapters.audit_store import PostgresAuditLog

            return PostgresAuditLog(url)
        return SqliteAuditLog(HomeLayout.resolve(self.home).audit_db)


AUDIT_URL_VARIABLE = "DRIFTGATE_AUDIT_URL"


def audit_resource(home: str | None = None) -> AuditResource:
    """The one way Dagster and the CLI pick the audit store: PostgreSQL when
    $DRIFTGATE_AUDIT_URL is set (the production profile; a secret, read when definitions
    load), else SQLite under the home."""
    # An EnvVar, not its value: Dagster shows resource config in the UI, and the URL may
    # carry a password.
    url = dg.EnvVar(AUDIT_URL_VARIABLE) if os.environ.get(AUDIT_URL_VARIABLE) else None
    return AuditResource(home=home, url=url)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "driftgate_home": DriftgateHomeResource(),
        "model_registry": RegistryResource(),
        "audit": audit_resource(),
    }
