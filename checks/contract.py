"""Data-contract checks through Great Expectations 1.x, built from the model's feature specs."""

from collections.abc import Callable

import dagster as dg
import pandas as pd

from orchestrator.core.audit import AuditLog, gate_event
from orchestrator.core.errors import DataError
from orchestrator.core.gates import ExpectationFailure, GateResult, evaluate_contract
from orchestrator.core.spec import FeatureKind, MonitoredModelSpec
from orchestrator.evidence import materialization_metadata
from orchestrator.metadata import check_result, failures_markdown
from orchestrator.naming import ModelNames
from orchestrator.resources import AuditResource, DriftgateHomeResource

_NUMERICAL_TYPES = ["int8", "int16", "int32", "int64", "float32", "float64", "Int64", "Float64"]
_CATEGORICAL_TYPES = ["str", "object", "category"]


def build_expectations(spec: MonitoredModelSpec, with_label: bool = False) -> list:
    """The contract as GE expectations: columns, dtypes, null rates, ranges, categories."""
    import great_expectations.expectations as gxe  # GE costs ~4 s to import: only when checking

    required = [spec.timestamp_column, spec.request_id_column, *spec.feature_names]
    required += [spec.label_column] if with_label else []
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=required, exact_match=False),
        gxe.ExpectColumnValuesToNotBeNull(column=spec.request_id_column),
        gxe.ExpectColumnValuesToBeUnique(column=spec.request_id_column),
        gxe.ExpectColumnValuesToNotBeNull(column=spec.timestamp_column),
    ]
    if with_label:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column=spec.label_column, value_set=[0, 1])
        )
    for f in spec.features:
        numerical = f.kind is FeatureKind.NUMERICAL
        type_list = _NUMERICAL_TYPES if numerical else _CATEGORICAL_TYPES
        expectations.append(
            gxe.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=type_list)
        )
        if f.max_null_fraction < 1.0:
            expectations.append(
                gxe.ExpectColumnValuesToNotBeNull(column=f.name, mostly=1.0 - f.max_null_fraction)
            )
        if f.min_value is not None or f.max_value is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=f.name, min_value=f.min_value, max_value=f.max_value
                )
            )
        if f.allowed_values is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(column=f.name, value_set=f.allowed_values)
            )
    return expectations


def validate_contract(
    frame: pd.DataFrame, spec: MonitoredModelSpec, with_label: bool = False
) -> tuple[GateResult, list[ExpectationFailure]]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("driftgate")
        .add_dataframe_asset(spec.name)
        .add_batch_definition_whole_dataframe("partition")
    )
    suite = gx.ExpectationSuite(
        name=f"{spec.name}_contract", expectations=build_expectations(spec, with_label)
    )
    batch = batch_definition.get_batch(batch_parameters={"dataframe": _ge_compatible(frame)})
    failures = [_failure(r) for r in batch.validate(suite).results if not r.success]
    return evaluate_contract(len(frame), failures), failures


def _ge_compatible(frame: pd.DataFrame) -> pd.DataFrame:
    """GE 1.24 does not recognise pandas 3's `str` dtype in type lists: present strings as object.

    Values are unchanged; only the dtype label differs, so the type expectations keep meaning
    "categorical columns hold strings".
    """
    converted = frame.copy()
    for column in converted.columns:
        if pd.api.types.is_string_dtype(converted[column]) and not isinstance(
            converted[column].dtype, pd.CategoricalDtype
        ):
            converted[column] = converted[column].astype(object)
    return converted


def _failure(result) -> ExpectationFailure:
    config = result.expectation_config
    details = result.result or {}
    observed = details.get("observed_value")
    if observed is None and "unexpected_count" in details:
        sample = details.get("partial_unexpected_list", [])[:5]
        observed = (
            f"{details['unexpected_count']} unexpected "
            f"({details.get('unexpected_percent', 0):.2f}%), e.g. {sample}"
        )
    if "details" in details:
        observed = f"{observed} {details['details']}"
    return ExpectationFailure(config.type, config.kwargs.get("column"), str(observed))


def judged_contract(
    spec: MonitoredModelSpec,
    load: Callable[[], pd.DataFrame],
    *,
    with_label: bool,
    audit: AuditLog,
    actor: str,
    dagster_run_id: str,
    record_pass: bool,
    **context: object,
) -> dg.AssetCheckResult:
    """Validate what `load` returns (no data is an empty partition: BLOCK) and audit the result:
    every block, and passes too when `record_pass` (a training set is a version's evidence)."""
    try:
        result, failures = validate_contract(load(), spec, with_label)
    except DataError as e:
        result, failures, context = evaluate_contract(0, []), [], {**context, "error": str(e)}
    if result.blocks or record_pass:
        failed = [f"{f.expectation}({f.column})" for f in failures]
        audit.append(gate_event(spec.name, actor, result, dagster_run_id, failed=failed, **context))
    return check_result(
        result,
        failed_expectations=failures_markdown(failures),
        **{k: str(v) for k, v in context.items()},
    )


def build_feature_contract_check(
    spec: MonitoredModelSpec, names: ModelNames, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.feature_table,
        name=names.contract_check.name,
        blocking=True,
        partitions_def=partitions_def,
        description=f"{spec.name}: the partition meets its data contract (Great Expectations): "
        "columns, dtypes, null rates, ranges and allowed categories.",
    )
    def feature_table_matches_contract(
        context: dg.AssetCheckExecutionContext,
        driftgate_home: DriftgateHomeResource,
        audit: AuditResource,
    ) -> dg.AssetCheckResult:
        partition = context.partition_key
        return judged_contract(
            spec,
            lambda: driftgate_home.store(spec).read_table("feature_table", partition),
            with_label=False,
            audit=audit.log(),
            actor=f"check:{names.contract_check.name}",
            dagster_run_id=context.run.run_id,
            record_pass=False,
            partition=partition,
        )

    return feature_table_matches_contract


def build_training_contract_check(
    spec: MonitoredModelSpec, names: ModelNames
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=names.training_dataset,
        name=names.training_contract_check.name,
        blocking=True,
        description=f"{spec.name}: the training dataset meets the data contract, labels included.",
    )
    def training_dataset_matches_contract(
        context: dg.AssetCheckExecutionContext,
        driftgate_home: DriftgateHomeResource,
        audit: AuditResource,
    ) -> dg.AssetCheckResult:
        snapshot = str(materialization_metadata(context, names.training_dataset).get("snapshot"))
        return judged_contract(
            spec,
            lambda: driftgate_home.store(spec).read_table("training_dataset", snapshot),
            with_label=True,
            audit=audit.log(),
            actor=f"check:{names.training_contract_check.name}",
            dagster_run_id=context.run.run_id,
            record_pass=True,
            snapshot=snapshot,
        )

    return training_dataset_matches_contract
