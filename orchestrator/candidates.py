"""A retraining's work, outside Dagster: train and register a candidate, then judge it.

The assets and checks in `assets/training.py` and `checks/evaluation.py` fetch inputs and call
these; everything here goes through the registry and audit interfaces, so the fakes test it.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from orchestrator.core.audit import AuditAction, AuditEvent, AuditLog, gate_event
from orchestrator.core.errors import DataError
from orchestrator.core.gates import GateResult, evaluate_candidate
from orchestrator.core.registry import (
    CHALLENGER,
    CHAMPION,
    GATE_TAG_PREFIX,
    TAG_TRAINING_DATA_HASH,
    TAG_TRAINING_PARTITIONS,
    TAG_TRIGGERED_BY,
    ModelRegistry,
    ModelVersion,
)
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.training import (
    data_hash,
    evaluate_model,
    prefixed,
    split_holdout,
    train_candidate,
)
from orchestrator.governance import Governance

CANDIDATE_PREFIX = "holdout_"
CHAMPION_PREFIX = "champion_holdout_"
CHAMPION_VERSION_METRIC = "champion_version"


@dataclass(frozen=True)
class Candidate:
    version: ModelVersion
    metrics: Mapping[str, float]


def train_and_register(
    spec: MonitoredModelSpec,
    frame: pd.DataFrame,
    registry: ModelRegistry,
    audit: AuditLog,
    lineage: Mapping[str, str],
    dagster_run_id: str,
) -> Candidate:
    """Train on the older rows, score candidate and champion on the newest, register the version."""
    train, holdout = split_holdout(frame, spec, spec.retrain.holdout_fraction)
    model = train_candidate(train, spec)
    metrics = prefixed(evaluate_model(model, holdout, spec), CANDIDATE_PREFIX)
    metrics |= champion_metrics(spec, registry, holdout)
    version = registry.log_model(
        spec.name,
        model,
        metrics=metrics,
        params={"rows_train": str(len(train)), "rows_holdout": str(len(holdout))},
        tags={**lineage, TAG_TRAINING_DATA_HASH: data_hash(frame)},
    )
    audit.append(
        AuditEvent(
            AuditAction.MODEL_REGISTERED,
            version.tags.get(TAG_TRIGGERED_BY, "unknown"),
            spec.name,
            version.version,
            dagster_run_id,
            {
                "training_partitions": version.tags.get(TAG_TRAINING_PARTITIONS),
                "mlflow_run_id": version.run_id,
                # The audited copy of what the tags say: promotion trusts this, not the tags.
                "triggered_by": version.tags.get(TAG_TRIGGERED_BY, "unknown"),
                "gates": version.gates,
            },
        )
    )
    return Candidate(version, metrics)


def champion_metrics(
    spec: MonitoredModelSpec, registry: ModelRegistry, holdout: pd.DataFrame
) -> dict[str, float]:
    """The champion scored on the candidate's holdout; only its version if it cannot be scored."""
    champion = registry.get_alias(spec.name, CHAMPION)
    if champion is None:
        return {}
    found = {CHAMPION_VERSION_METRIC: float(champion.version)}
    try:
        scores = evaluate_model(registry.load_model(spec.name, champion.version), holdout, spec)
    except (DataError, ValueError, KeyError):
        return found  # the evaluation gate blocks: a champion existed but gave no score
    return found | prefixed(scores, CHAMPION_PREFIX)


def _unprefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def judge_candidate(
    spec: MonitoredModelSpec,
    registry: ModelRegistry,
    audit: AuditLog,
    version: str,
    actor: str,
    dagster_run_id: str,
) -> GateResult:
    """Run the evaluation gate on a registered version; record it as a tag and in the audit log.

    A version that passes becomes `challenger`, the candidate awaiting approval.
    """
    metrics = registry.get_version(spec.name, version).metrics
    champion = _unprefixed(metrics, CHAMPION_PREFIX)
    had_champion = CHAMPION_VERSION_METRIC in metrics
    result = evaluate_candidate(
        _unprefixed(metrics, CANDIDATE_PREFIX) or None,
        champion if had_champion else None,
        spec.retrain,
    )
    registry.set_tags(spec.name, version, {f"{GATE_TAG_PREFIX}evaluation": result.verdict.value})
    if not result.blocks:
        registry.set_alias(spec.name, CHALLENGER, version)
    audit.append(gate_event(spec.name, actor, result, dagster_run_id, version))
    Governance(spec, registry, audit).lapse_on_failure(version, result, dagster_run_id)
    return result
