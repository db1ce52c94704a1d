"""The Dagster names of one monitored model's objects. Names are contracts: keep them stable."""

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class ModelNames:
    model: str

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.model, asset])

    @property
    def feature_table(self) -> dg.AssetKey:
        return self.key("feature_table")

    @property
    def feature_profile(self) -> dg.AssetKey:
        return self.key("feature_profile")

    @property
    def reference_profile(self) -> dg.AssetKey:
        return self.key("reference_profile")

    @property
    def audit_trail(self) -> dg.AssetKey:
        return self.key("audit_trail")

    @property
    def audit_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.audit_trail, "audit_trail_is_intact")

    @property
    def training_dataset(self) -> dg.AssetKey:
        return self.key("training_dataset")

    @property
    def candidate_model(self) -> dg.AssetKey:
        return self.key("candidate_model")

    @property
    def champion_model(self) -> dg.AssetKey:
        return self.key("champion_model")

    @property
    def freshness_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.feature_table, "feature_table_is_fresh")

    @property
    def contract_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.feature_table, "feature_table_matches_contract")

    @property
    def drift_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.feature_profile, "feature_profile_within_drift_thresholds")

    @property
    def training_contract_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.training_dataset, "training_dataset_matches_contract")

    @property
    def evaluation_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.candidate_model, "candidate_model_not_worse_than_champion")

    @property
    def prediction_events(self) -> dg.AssetKey:
        return self.key("prediction_events")

    @property
    def sla_metrics(self) -> dg.AssetKey:
        return self.key("sla_metrics")

    @property
    def labels(self) -> dg.AssetKey:
        return self.key("labels")

    @property
    def performance_reference(self) -> dg.AssetKey:
        return self.key("performance_reference")

    @property
    def realized_performance(self) -> dg.AssetKey:
        return self.key("realized_performance")

    @property
    def estimated_performance(self) -> dg.AssetKey:
        return self.key("estimated_performance")

    @property
    def sla_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.sla_metrics, "sla_metrics_within_sla")

    @property
    def realized_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.realized_performance, "realized_performance_within_thresholds")

    @property
    def estimated_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(
            self.estimated_performance, "estimated_performance_within_thresholds"
        )

    @property
    def agreement_check(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(
            self.realized_performance, "realized_performance_agrees_with_estimate"
        )

    @property
    def monitor_job(self) -> str:
        return f"monitor_{self.model}_features"

    @property
    def predictions_job(self) -> str:
        return f"monitor_{self.model}_predictions"

    @property
    def performance_job(self) -> str:
        return f"measure_{self.model}_performance"

    @property
    def measure_sensor(self) -> str:
        return f"measure_{self.model}_on_labels"

    @property
    def retrain_job(self) -> str:
        return f"retrain_{self.model}"

    @property
    def promote_job(self) -> str:
        return f"promote_{self.model}"

    @property
    def retrain_sensor(self) -> str:
        return f"retrain_{self.model}_on_drift"

    @property
    def promote_sensor(self) -> str:
        return f"promote_{self.model}_on_approval"

    @property
    def rollback_sensor(self) -> str:
        return f"rollback_{self.model}_on_failed_check"
