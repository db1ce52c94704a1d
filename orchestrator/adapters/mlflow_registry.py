"""ModelRegistry over MLflow's client: registered models, version tags and aliases.

Registry stages are deprecated in MLflow and never used: `champion` and `challenger` are aliases.
"""

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from orchestrator.core.errors import RegistryError
from orchestrator.core.registry import TAG_DAGSTER_RUN_ID, ModelRegistry, ModelVersion

# Pinning requirements skips MLflow's environment inference, which costs 5-10 s per model.
_PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "pandas==3.1.1", "numpy==2.4.6"]
# MLflow saves scikit-learn models with skops, which refuses types it does not trust; the
# pipeline's one-hot encoder stores a numpy dtype, which is plain data.
_SKOPS_TRUSTED_TYPES = ["numpy.dtype"]


def _not_found(error: MlflowException) -> bool:
    return error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


class MlflowModelRegistry(ModelRegistry):
    def __init__(self, tracking_uri: str, artifact_root: Path):
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _experiment_id(self, name: str) -> str:
        experiment_name = f"driftgate/{name}"
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = (self.artifact_root / name).resolve().as_uri()
        return self.client.create_experiment(experiment_name, artifact_location=location)

    def _ensure_registered_model(self, name: str) -> None:
        try:
            self.client.get_registered_model(name)
        except MlflowException as e:
            if not _not_found(e):
                raise RegistryError(f"cannot read registered model {name!r}: {e}") from e
            self.client.create_registered_model(name, description=f"Monitored by driftgate: {name}")

    def log_model(self, name, model, *, metrics, params, tags) -> ModelVersion:
        if TAG_DAGSTER_RUN_ID not in tags:
            raise RegistryError("every MLflow run and version must carry a dagster_run_id tag")
        # The fluent API is the only way to log a flavoured model; point it at this registry.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        with mlflow.start_run(experiment_id=self._experiment_id(name), tags=dict(tags)) as run:
            mlflow.log_params(dict(params))
            mlflow.log_metrics(dict(metrics))
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                pip_requirements=_PIP_REQUIREMENTS,
                skops_trusted_types=_SKOPS_TRUSTED_TYPES,
            )
        self._ensure_registered_model(name)
        created = self.client.create_model_version(
            name, source=info.model_uri, run_id=run.info.run_id, tags=dict(tags)
        )
        return self.get_version(name, created.version)

    def load_model(self, name: str, version: str) -> object:
        self.get_version(name, version)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow.sklearn.load_model(f"models:/{name}/{version}")

    def get_version(self, name: str, version: str) -> ModelVersion:
        try:
            mv = self.client.get_model_version(name, version)
        except MlflowException as e:
            raise RegistryError(f"model {name!r} has no version {version!r}: {e.message}") from e
        metrics = self.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id,
            tags=dict(mv.tags),
            aliases=tuple(mv.aliases),
            created_at=dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC),
            metrics=dict(metrics),
        )

    def list_versions(self, name: str) -> list[ModelVersion]:
        found = self.client.search_model_versions(f"name = '{name}'")
        return [self.get_version(name, str(v.version)) for v in sorted(found, key=_version_number)]

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        self.get_version(name, version)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException as e:
            if _not_found(e) or "not found" in str(e).lower():
                return None
            raise RegistryError(f"cannot read alias {alias!r} of {name!r}: {e}") from e
        return self.get_version(name, str(mv.version))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.get_version(name, version)
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        if self.get_alias(name, alias) is not None:
            self.client.delete_registered_model_alias(name, alias)


def _version_number(mv) -> int:
    return int(mv.version)
