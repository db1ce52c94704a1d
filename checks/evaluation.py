"""Evaluation gate: the candidate is not worse than the champion on recent held-out data."""

import dagster as dg

from orchestrator.candidates import judge_candidate
from orchestrator.core.gates import GateResult, GateVerdict
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.evidence import materialization_metadata
from orchestrator.metadata import check_result
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, RegistryResource


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
        candidate = materialization_metadata(context, names.candidate_model)
        if "version" not in candidate:
            return check_result(GateResult("evaluation", GateVerdict.BLOCK, "no candidate version"))
        version = str(candidate["version"])
        result = judge_candidate(
            spec,
            model_registry.registry(),
            audit.log(),
            version,
            f"check:{names.evaluation_check.name}",
            context.run.run_id,
        )
        return check_result(result, version=version)

    return candidate_model_not_worse_than_champion
