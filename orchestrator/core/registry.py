"""The model registry as driftgate needs it: versions, tags, aliases. MLflow implements it.

Tag names here are a contract (ARCHITECTURE.md): lineage tags, `gate.<name>` results and the
approval tags are what a user of the MLflow UI reads.
"""

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.core.errors import RegistryError

CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_DAGSTER_RUN_ID = "dagster_run_id"
TAG_TRAINING_PARTITIONS = "training_partitions"
TAG_TRAINING_DATA_HASH = "training_data_hash"
TAG_CODE_VERSION = "code_version"
TAG_TRIGGER = "trigger"
TAG_TRIGGERED_BY = "triggered_by"
TAG_APPROVED_BY = "approved_by"
TAG_APPROVED_AT = "approved_at"
TAG_APPROVAL_REASON = "approval_reason"
TAG_APPROVAL_STATE = "approval_state"  # approved, rejected, lapsed, pending (k of n)
TAG_APPROVALS = "approvals"  # who approved so far, comma-separated
TAG_REJECTED_BY = "rejected_by"
TAG_PROMOTED_AT = "promoted_at"
TAG_REPLACED_VERSION = "replaced_version"
GATE_TAG_PREFIX = "gate."


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str | None
    tags: Mapping[str, str]
    aliases: tuple[str, ...] = ()
    created_at: dt.datetime | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def gates(self) -> dict[str, str]:
        return {
            k.removeprefix(GATE_TAG_PREFIX): v
            for k, v in self.tags.items()
            if k.startswith(GATE_TAG_PREFIX)
        }

    @property
    def approved_by(self) -> str | None:
        return self.tags.get(TAG_APPROVED_BY)

    @property
    def training_partitions(self) -> list[str]:
        raw = self.tags.get(TAG_TRAINING_PARTITIONS, "")
        return [p for p in raw.split(",") if p]


class ModelRegistry(ABC):
    """Narrow interface over a model registry; MLflow and an in-memory fake implement it."""

    @abstractmethod
    def log_model(
        self,
        name: str,
        model: object,
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> ModelVersion:
        """Record a training run for `model` and register it as a new version of `name`."""

    @abstractmethod
    def load_model(self, name: str, version: str) -> object: ...

    @abstractmethod
    def get_version(self, name: str, version: str) -> ModelVersion:
        """Raise RegistryError naming the model and version when it does not exist."""

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, oldest first; empty when the model is not registered."""

    @abstractmethod
    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None: ...

    @abstractmethod
    def get_alias(self, name: str, alias: str) -> ModelVersion | None: ...

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None:
        """Remove the alias if it is set; no error when it is not."""


class InMemoryModelRegistry(ModelRegistry):
    """The fake for unit tests: same contract, no I/O."""

    def __init__(self) -> None:
        self._versions: dict[str, list[ModelVersion]] = {}
        self._models: dict[tuple[str, str], object] = {}
        self._aliases: dict[tuple[str, str], str] = {}

    def log_model(self, name, model, *, metrics, params, tags) -> ModelVersion:
        versions = self._versions.setdefault(name, [])
        version = ModelVersion(
            name,
            str(len(versions) + 1),
            f"run-{name}-{len(versions) + 1}",
            dict(tags),
            metrics=dict(metrics),
        )
        versions.append(version)
        self._models[(name, version.version)] = model
        return self.get_version(name, version.version)

    def load_model(self, name: str, version: str) -> object:
        self.get_version(name, version)
        return self._models[(name, version)]

    def get_version(self, name: str, version: str) -> ModelVersion:
        for v in self._versions.get(name, []):
            if v.version == version:
                aliases = tuple(
                    a for (n, a), ver in self._aliases.items() if n == name and ver == version
                )
                return ModelVersion(
                    v.name, v.version, v.run_id, dict(v.tags), aliases, v.created_at, v.metrics
                )
        raise RegistryError(f"model {name!r} has no version {version!r}")

    def list_versions(self, name: str) -> list[ModelVersion]:
        return [self.get_version(name, v.version) for v in self._versions.get(name, [])]

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        current = self.get_version(name, version)
        updated = ModelVersion(
            name, version, current.run_id, {**current.tags, **tags}, metrics=current.metrics
        )
        self._versions[name] = [
            updated if v.version == version else v for v in self._versions[name]
        ]

    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        version = self._aliases.get((name, alias))
        return self.get_version(name, version) if version else None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.get_version(name, version)
        self._aliases[(name, alias)] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self._aliases.pop((name, alias), None)
