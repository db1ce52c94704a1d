"""Evaluation gate: the candidate is not worse than the champion on recent held-out data."""

import dagster as dg

from orchestrator.core.audit import AuditAction, AuditEvent
from orchestrator.core.gates import GateResult, GateVerdict, evaluate_candidate
from orchestrator.core.registry import GATE_TAG_PREFIX
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import latest_materialization_metadata
from orchestrator.metadata import check_result
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, RegistryResource

CANDIDATE_PREFIX = "holdout_"
CHAMPION_PREFIX = "champion_holdout_"


def metrics_with_prefix(metrics: dict[str, float], prefix: str) -> dict[str, float] | None:
    found = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
    return found or None


def build_evaluation_check(spec: MonitoredModelSpec, names: ModelNames) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.candidate_model,
        name=names.evaluation_check.name,
        blocking=True,
        description=f"{spec.name}: the candidate's {spec.retrain.metric} on recent held-out data "
        f"is not worse than the champion's by more than {spec.retrain.evaluation_tolerance}.",
    )
    def candidate_model_not_worse_than_champion(
        context: dg.AssetCheckExecutionContext,
        model_registry: RegistryResource,
        audit: AuditResource,
    ) -> dg.AssetCheckResult:
        version = latest_materialization_metadata(context.instance, names.candidate_model).get(
            "version"
        )
        if version is None:
            return check_result(GateResult("evaluation", GateVerdict.BLOCK, "no candidate version"))
        registry = model_registry.registry()
        metrics = dict(registry.get_version(spec.name, str(version)).metrics)
        champion_metrics = metrics_with_prefix(metrics, CHAMPION_PREFIX)
        if champion_metrics is None and "champion_version" in metrics:
            champion_metrics = {}  # a champion existed but could not be scored: fail closed
        result = evaluate_candidate(
            metrics_with_prefix(metrics, CANDIDATE_PREFIX), champion_metrics, spec.retrain
        )
        registry.set_tags(spec.name, str(version), {f"{GATE_TAG_PREFIX}evaluation": result.verdict})
        audit.log().append(
            AuditEvent(
                AuditAction.GATE_EVALUATED,
                f"check:{names.evaluation_check.name}",
                spec.name,
                str(version),
                context.run.run_id,
                {"gate": "evaluation", "verdict": result.verdict.value, "reason": result.reason},
            )
        )
        return check_result(result, version=str(version))

    return candidate_model_not_worse_than_champion
