"""Delayed labels: attach each day's arrivals to the predictions they judge, quarantine the rest.

Labels arrive days after the predictions, one arrival partition per day (a file named for the
arrival day, holding request id and label). A label may arrive twice, in the same file or in a
later one: the last write wins (later arrival partition first, then later row in the file). A
label that names no prediction within the lookback window, or that is not a valid label, is an
orphan: quarantined with the rule it broke, and counted, never silently dropped.
"""

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from orchestrator.core.errors import DataError

LABEL_PARTITION = "label_partition"  # the arrival day of a label, ISO string
PREDICTION_PARTITION = "prediction_partition"  # the day of the prediction a label judges

TASKS = ("binary_classification", "regression")

MISSING_REQUEST_ID = "missing request id"
MISSING_LABEL = "missing label"
NOT_BINARY = "label is not 0 or 1"
NOT_FINITE = "label is not a finite number"
UNKNOWN_REQUEST_ID = "no prediction with this request id"
OUTSIDE_WINDOW = "prediction outside the lookback window"

_TRUE_FALSE = {"true": 1.0, "false": 0.0}


def _require(frame: pd.DataFrame, columns: Collection[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} has no column {missing}; columns: {list(frame.columns)}")


def normalise_labels(values: pd.Series, task: str) -> tuple[pd.Series, pd.Series]:
    """(labels as float, NaN where invalid; the rule each invalid label broke, "" if valid).

    Binary labels accept bool, numbers equal to 0 or 1 and the strings "0", "1", "true",
    "false" (any case, surrounding spaces ignored); regression labels any finite number.
    """
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; valid: {list(TASKS)}")
    missing = values.isna().to_numpy()
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if task == "binary_classification":
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            words = values.astype("string").str.strip().str.lower().map(_TRUE_FALSE)
            numbers = numbers.fillna(words.astype(float))
        valid = numbers.isin([0.0, 1.0]).to_numpy()
        broken = NOT_BINARY
    else:
        valid = np.isfinite(numbers.to_numpy())
        broken = NOT_FINITE
    reasons = np.where(missing, MISSING_LABEL, np.where(valid, "", broken))
    return numbers.where(valid), pd.Series(reasons, index=values.index, dtype=object)


def infer_task(values: pd.Series) -> str:
    """binary_classification when every present label is a valid binary label, else regression."""
    _, reasons = normalise_labels(values, "binary_classification")
    return "regression" if (reasons == NOT_BINARY).any() else "binary_classification"


def _as_output(labels: pd.Series, task: str) -> pd.Series:
    return labels.astype("int64") if task == "binary_classification" else labels.astype(float)


def _comparable_keys(left: pd.Series, right: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Request ids as written by two systems: when one side is numeric and the other is not
    (ids read back from a CSV as ints, say), compare both as strings rather than match nothing."""
    numeric = pd.api.types.is_numeric_dtype
    if numeric(left) != numeric(right):
        return left.astype("string"), right.astype("string")
    return left, right


def latest_labels(labels: pd.DataFrame, request_id: str, label: str) -> tuple[pd.DataFrame, int]:
    """One label per request id, the last written: latest arrival partition, then latest row.

    Returns (columns request_id, label, label_partition in the caller's column names, one row
    per request id, ordered by when the winning label was written; how many rows it
    superseded). Rows without a request id label no request and are left out here: callers
    that receive labels (`attach_labels`) quarantine and count them before this runs.
    """
    _require(labels, [request_id, label, LABEL_PARTITION], "the labels")
    return _last_writes(labels[[request_id, label, LABEL_PARTITION]], request_id)


def _last_writes(labels: pd.DataFrame, request_id: str) -> tuple[pd.DataFrame, int]:
    """The winning row (every column) per request id, and how many rows lost."""
    kept = labels[labels[request_id].notna()]
    order = kept.assign(_row=np.arange(len(kept))).sort_values(
        [LABEL_PARTITION, "_row"], kind="stable"
    )
    latest = order.drop_duplicates(request_id, keep="last").drop(columns="_row")
    return latest.reset_index(drop=True), len(kept) - len(latest)


@dataclass(frozen=True)
class LabelArrival:
    """What one day's labels did: which attached, which were quarantined and why.

    received = attached_rows + orphan_rows + rows superseded within the arrival. `duplicates`
    also counts attached labels that replace an earlier arrival's label for the same request.
    `late` counts attached labels for prediction partitions already measured: those
    partitions must be measured again.
    """

    attached: pd.DataFrame  # request_id, label, prediction_partition, label_partition
    orphans: pd.DataFrame  # request_id, label (as received), label_partition, reason
    received: int
    attached_rows: int
    duplicates: int
    late: int
    orphan_rows: int
    prediction_partitions: list[str]
    window: tuple[str, str] = ("", "")  # first and last prediction partition labels may judge
    late_partitions: list[str] = field(default_factory=list)

    @property
    def orphan_reasons(self) -> dict[str, int]:
        """Orphan rows per rule broken, for metadata."""
        return {str(k): int(v) for k, v in self.orphans["reason"].value_counts().items()}


def attach_labels(
    arrival: pd.DataFrame,
    arrival_day: dt.date,
    predictions: pd.DataFrame,
    *,
    request_id: str,
    label: str,
    lookback_days: int,
    earlier: pd.DataFrame | None = None,
    measured: Collection[str] = (),
    task: str = "binary_classification",
) -> LabelArrival:
    """Attach the labels that arrived on `arrival_day` to predictions of that day or up to
    `lookback_days` before.

    `predictions` holds request_id and prediction_partition; rows outside the window are
    ignored (a label for them is an orphan, "prediction outside the lookback window"). When a
    request id was predicted in several partitions of the window, the latest one is labelled.
    `earlier` holds labels attached from other arrival partitions (rows of this same arrival
    day, from a previous run of it, are ignored: a re-run replaces, it does not duplicate).
    """
    _require(arrival, [request_id, label], f"the labels that arrived on {arrival_day}")
    _require(predictions, [request_id, PREDICTION_PARTITION], "the predictions")
    day = arrival_day.isoformat()
    window = ((arrival_day - dt.timedelta(days=lookback_days)).isoformat(), day)
    rows = arrival[[request_id, label]].reset_index(drop=True).assign(**{LABEL_PARTITION: day})

    partition = predictions[PREDICTION_PARTITION].astype(str)
    inside = partition.between(*window).to_numpy()
    in_window = _latest_prediction(predictions.loc[inside, request_id], partition[inside])
    ids, window_ids = _comparable_keys(rows[request_id], pd.Series(in_window.index))
    in_window.index = pd.Index(window_ids)
    predicted_at = ids.map(in_window)
    ids, predicted_ids = _comparable_keys(rows[request_id], predictions[request_id].dropna())
    predicted_elsewhere = ids.isin(predicted_ids).to_numpy()

    values, label_reasons = normalise_labels(rows[label], task)
    reasons = np.select(
        [
            rows[request_id].isna().to_numpy(),
            (label_reasons != "").to_numpy(),
            predicted_at.notna().to_numpy(),
            predicted_elsewhere,
        ],
        [MISSING_REQUEST_ID, label_reasons.to_numpy(), "", OUTSIDE_WINDOW],
        default=UNKNOWN_REQUEST_ID,
    )
    orphan = reasons != ""
    orphans = rows[orphan].assign(reason=reasons[orphan]).reset_index(drop=True)

    valid = rows[~orphan].assign(
        **{label: _as_output(values[~orphan], task), PREDICTION_PARTITION: predicted_at[~orphan]}
    )
    attached, superseded = _last_writes(valid, request_id)
    attached = attached[[request_id, label, PREDICTION_PARTITION, LABEL_PARTITION]]
    ids, earlier_ids = _comparable_keys(
        attached[request_id], _earlier_ids(earlier, request_id, day)
    )
    repeated = int(ids.isin(earlier_ids).sum())
    is_late = attached[PREDICTION_PARTITION].isin({str(m) for m in measured})
    return LabelArrival(
        attached=attached,
        orphans=orphans,
        received=len(rows),
        attached_rows=len(attached),
        duplicates=superseded + repeated,
        late=int(is_late.sum()),
        orphan_rows=len(orphans),
        prediction_partitions=sorted(attached[PREDICTION_PARTITION].unique().tolist()),
        window=window,
        late_partitions=sorted(attached.loc[is_late, PREDICTION_PARTITION].unique().tolist()),
    )


def _latest_prediction(ids: pd.Series, partitions: pd.Series) -> pd.Series:
    """request id -> its latest prediction partition."""
    frame = pd.DataFrame({"id": ids.to_numpy(), "partition": partitions.to_numpy()}).dropna()
    return frame.groupby("id", sort=False)["partition"].max()


def _earlier_ids(earlier: pd.DataFrame | None, request_id: str, day: str) -> pd.Series:
    if earlier is None or earlier.empty:
        return pd.Series([], dtype=object)
    _require(earlier, [request_id], "the labels attached earlier")
    if LABEL_PARTITION in earlier.columns:
        earlier = earlier[earlier[LABEL_PARTITION].astype(str) != day]
    return earlier[request_id].dropna()


@dataclass(frozen=True)
class LabelJoin:
    """Prediction rows with their (latest) label; how many found one, and how many did not."""

    labelled: (
        pd.DataFrame
    )  # the prediction rows that have a label, with `label` (and its partition)
    labelled_rows: int
    unlabelled_rows: int
    superseded: int  # label rows replaced by a later write for the same request id
    invalid: int = 0  # label rows dropped because the label was missing or not valid
    task: str = "binary_classification"  # how the labels were read


def join_labels(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    request_id: str,
    label: str,
    task: str | None = None,
) -> LabelJoin:
    """Inner join of predictions with the latest label of each request id.

    `labels` carry label_partition. The output label column is `label`: int 0/1 for a binary
    classifier (accepted spellings normalised), float for regression; `task` is inferred from
    the labels when not given. Invalid labels are dropped (counted) before the last write is
    chosen, so a broken row never overrides a valid label.
    """
    _require(predictions, [request_id], "the predictions")
    _require(labels, [request_id, label, LABEL_PARTITION], "the labels")
    task = task or infer_task(labels[label])
    values, reasons = normalise_labels(labels[label], task)
    valid = (reasons == "").to_numpy()
    clean = labels.loc[valid, [request_id, LABEL_PARTITION]].assign(label=values[valid])
    latest, superseded = latest_labels(clean, request_id, "label")
    latest["label"] = _as_output(latest["label"], task)
    left = predictions.drop(columns=["label", LABEL_PARTITION], errors="ignore")
    keys, label_keys = _comparable_keys(left[request_id], latest[request_id])
    joined = left.assign(_key=keys.to_numpy()).merge(
        latest.drop(columns=request_id).assign(_key=label_keys.to_numpy()),
        on="_key",
        how="inner",
        sort=False,
    )
    labelled = joined.drop(columns="_key")
    return LabelJoin(
        labelled=labelled,
        labelled_rows=len(labelled),
        unlabelled_rows=len(predictions) - len(labelled),
        superseded=superseded,
        invalid=int((~valid).sum()),
        task=task,
    )


def labelled_count(request_ids: pd.Series, labels: pd.DataFrame, request_id: str) -> int:
    """How many of `request_ids` have a label in `labels`."""
    _require(labels, [request_id], "the labels")
    ids, label_ids = _comparable_keys(request_ids, labels[request_id].dropna())
    return int(ids.isin(label_ids).sum())
