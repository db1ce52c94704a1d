"""Delayed labels: last write wins, late labels re-open measured partitions, orphans are
quarantined with the rule they broke, and the join counts what it labelled."""

import datetime as dt

import pandas as pd
import pytest

from orchestrator.core.errors import DataError
from orchestrator.core.labels import (
    LABEL_PARTITION,
    MISSING_LABEL,
    MISSING_REQUEST_ID,
    NOT_BINARY,
    NOT_FINITE,
    OUTSIDE_WINDOW,
    PREDICTION_PARTITION,
    UNKNOWN_REQUEST_ID,
    attach_labels,
    join_labels,
    labelled_count,
    latest_labels,
)

DAY = dt.date(2026, 3, 20)


def predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": ["r1", "r2", "r3", "r4", "r5", "r_old"],
            PREDICTION_PARTITION: [
                "2026-03-18",
                "2026-03-18",
                "2026-03-19",
                "2026-03-20",
                "2026-03-13",  # exactly lookback_days (7) before: still inside
                "2026-03-12",  # one day too old
            ],
        }
    )


def attach(arrival: pd.DataFrame, **kwargs):
    defaults = dict(request_id="request_id", label="churned", lookback_days=7)
    return attach_labels(arrival, DAY, predictions(), **(defaults | kwargs))


def test_labels_attach_to_their_prediction_partition():
    arrival = pd.DataFrame({"request_id": ["r1", "r3", "r5"], "churned": [1, 0, 1]})
    result = attach(arrival)
    assert result.attached.to_dict("records") == [
        {
            "request_id": "r1",
            "churned": 1,
            PREDICTION_PARTITION: "2026-03-18",
            LABEL_PARTITION: "2026-03-20",
        },
        {
            "request_id": "r3",
            "churned": 0,
            PREDICTION_PARTITION: "2026-03-19",
            LABEL_PARTITION: "2026-03-20",
        },
        {
            "request_id": "r5",
            "churned": 1,
            PREDICTION_PARTITION: "2026-03-13",
            LABEL_PARTITION: "2026-03-20",
        },
    ]
    assert (result.received, result.attached_rows, result.orphan_rows) == (3, 3, 0)
    assert (result.duplicates, result.late) == (0, 0)
    assert result.prediction_partitions == ["2026-03-13", "2026-03-18", "2026-03-19"]
    assert result.window == ("2026-03-13", "2026-03-20")


def test_label_for_an_already_measured_partition_is_late():
    arrival = pd.DataFrame({"request_id": ["r1", "r2", "r3", "r4"], "churned": [1, 0, 1, 0]})
    result = attach(arrival, measured={"2026-03-18", "2026-03-01"})
    assert result.late == 2  # r1 and r2 judge 2026-03-18, which was measured already
    assert result.late_partitions == ["2026-03-18"]
    assert result.attached_rows == 4


def test_duplicate_within_one_file_keeps_the_last_row():
    arrival = pd.DataFrame(
        {"request_id": ["r1", "r2", "r1", "r1"], "churned": [0, 1, 1, 0]},
    )
    result = attach(arrival)
    kept = dict(zip(result.attached["request_id"], result.attached["churned"], strict=True))
    assert kept == {"r2": 1, "r1": 0}  # the last r1 row says 0
    assert result.duplicates == 2
    assert result.received == result.attached_rows + result.orphan_rows + 2


def test_label_arriving_again_in_a_later_partition_is_a_duplicate_and_the_later_wins():
    earlier = pd.DataFrame(
        {
            "request_id": ["r1", "r2"],
            "churned": [0, 1],
            PREDICTION_PARTITION: ["2026-03-18", "2026-03-18"],
            LABEL_PARTITION: ["2026-03-19", "2026-03-19"],
        }
    )
    result = attach(pd.DataFrame({"request_id": ["r1", "r3"], "churned": [1, 1]}), earlier=earlier)
    assert result.duplicates == 1  # r1 supersedes the 2026-03-19 label
    assert result.attached_rows == 2

    everything = pd.concat([result.attached, earlier], ignore_index=True)  # order must not matter
    latest, superseded = latest_labels(everything, "request_id", "churned")
    assert superseded == 1
    assert dict(zip(latest["request_id"], latest["churned"], strict=True)) == {
        "r2": 1,
        "r1": 1,
        "r3": 1,
    }


def test_rerunning_the_same_arrival_day_is_not_a_duplicate():
    arrival = pd.DataFrame({"request_id": ["r1"], "churned": [1]})
    first = attach(arrival)
    again = attach(arrival, earlier=first.attached)
    assert again.duplicates == 0


def test_latest_labels_orders_by_partition_then_row():
    labels = pd.DataFrame(
        {
            "id": ["a", "a", "b", "a", "b"],
            "y": [1, 2, 3, 4, 5],
            LABEL_PARTITION: ["2026-03-02", "2026-03-01", "2026-03-01", "2026-03-02", "2026-03-01"],
        }
    )
    latest, superseded = latest_labels(labels, "id", "y")
    assert superseded == 3
    # a: the 2026-03-02 partition wins over 03-01, and its later row (4) over its earlier (1)
    assert latest.to_dict("records") == [
        {"id": "b", "y": 5, LABEL_PARTITION: "2026-03-01"},
        {"id": "a", "y": 4, LABEL_PARTITION: "2026-03-02"},
    ]


def test_orphans_are_quarantined_with_the_rule_they_broke():
    arrival = pd.DataFrame(
        {
            "request_id": ["unknown", "r_old", None, "r1", "r2", "r3", "r4", "r5"],
            "churned": [1, 1, 1, "maybe", None, 2, 0.5, 1],
        }
    )
    result = attach(arrival)
    ids = result.orphans["request_id"].fillna("<none>")
    reasons = dict(zip(ids, result.orphans["reason"], strict=True))
    assert reasons == {
        "unknown": UNKNOWN_REQUEST_ID,
        "r_old": OUTSIDE_WINDOW,
        "<none>": MISSING_REQUEST_ID,
        "r1": NOT_BINARY,
        "r2": MISSING_LABEL,
        "r3": NOT_BINARY,
        "r4": NOT_BINARY,
    }
    assert result.orphan_rows == 7
    assert result.orphan_reasons[NOT_BINARY] == 3
    assert result.attached["request_id"].tolist() == ["r5"]
    assert set(result.orphans[LABEL_PARTITION]) == {"2026-03-20"}
    assert result.orphans.loc[result.orphans["request_id"] == "r1", "churned"].item() == "maybe"


def test_invalid_later_row_does_not_override_a_valid_label():
    arrival = pd.DataFrame({"request_id": ["r1", "r1"], "churned": [1, "nope"]})
    result = attach(arrival)
    assert result.attached["churned"].tolist() == [1]
    assert (result.duplicates, result.orphan_rows) == (0, 1)


def test_accepted_binary_spellings_are_normalised():
    arrival = pd.DataFrame(
        {
            "request_id": ["r1", "r2", "r3", "r4", "r5"],
            "churned": [True, "0", " TRUE ", "false", 1.0],
        }
    )
    result = attach(arrival)
    assert result.orphan_rows == 0
    assert result.attached["churned"].tolist() == [1, 0, 1, 0, 1]
    assert result.attached["churned"].dtype == "int64"


def test_regression_labels_must_be_finite():
    arrival = pd.DataFrame(
        {"request_id": ["r1", "r2", "r3"], "churned": [3.5, float("inf"), "12.25"]},
    )
    result = attach(arrival, task="regression")
    assert result.attached["churned"].tolist() == [3.5, 12.25]
    assert result.orphans["reason"].tolist() == [NOT_FINITE]


def test_prediction_in_the_future_of_the_arrival_is_outside_the_window():
    preds = pd.DataFrame({"request_id": ["r9"], PREDICTION_PARTITION: ["2026-03-21"]})
    result = attach_labels(
        pd.DataFrame({"request_id": ["r9"], "churned": [1]}),
        DAY,
        preds,
        request_id="request_id",
        label="churned",
        lookback_days=7,
    )
    assert result.orphans["reason"].tolist() == [OUTSIDE_WINDOW]


def test_missing_columns_are_named():
    with pytest.raises(DataError, match="churned"):
        attach(pd.DataFrame({"request_id": ["r1"]}))
    with pytest.raises(DataError, match="request_id"):
        attach(pd.DataFrame({"id": ["r1"], "churned": [1]}))
    with pytest.raises(DataError, match=PREDICTION_PARTITION):
        attach_labels(
            pd.DataFrame({"request_id": ["r1"], "churned": [1]}),
            DAY,
            pd.DataFrame({"request_id": ["r1"]}),
            request_id="request_id",
            label="churned",
            lookback_days=7,
        )
    with pytest.raises(DataError, match=LABEL_PARTITION):
        join_labels(
            predictions(),
            pd.DataFrame({"request_id": ["r1"], "churned": [1]}),
            request_id="request_id",
            label="churned",
        )


def labels_frame(rows: list[tuple[str, object, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["request_id", "churned", LABEL_PARTITION])


def test_join_counts_labelled_and_unlabelled_and_superseded():
    preds = predictions().assign(score=[0.9, 0.1, 0.8, 0.3, 0.6, 0.5])
    labels = labels_frame(
        [
            ("r1", 0, "2026-03-19"),
            ("r1", "true", "2026-03-20"),  # later arrival: wins, and is normalised to 1
            ("r2", 0, "2026-03-20"),
            ("r3", 1, "2026-03-21"),
            ("r3", 0, "2026-03-20"),  # older arrival though a later row: loses
            ("nobody", 1, "2026-03-20"),
        ]
    )
    joined = join_labels(preds, labels, request_id="request_id", label="churned")
    assert (joined.labelled_rows, joined.unlabelled_rows, joined.superseded) == (3, 3, 2)
    assert joined.task == "binary_classification"
    assert joined.labelled[["request_id", "score", "label"]].to_dict("records") == [
        {"request_id": "r1", "score": 0.9, "label": 1},
        {"request_id": "r2", "score": 0.1, "label": 0},
        {"request_id": "r3", "score": 0.8, "label": 1},
    ]
    assert joined.labelled["label"].dtype == "int64"


def test_join_of_regression_labels_is_float():
    labels = labels_frame([("r1", 3, "2026-03-20"), ("r2", 2.5, "2026-03-20")])
    joined = join_labels(predictions(), labels, request_id="request_id", label="churned")
    assert joined.task == "regression"
    assert joined.labelled["label"].tolist() == [3.0, 2.5]
    assert joined.labelled["label"].dtype == "float64"


def test_join_drops_invalid_labels_and_never_matches_missing_ids():
    preds = pd.DataFrame({"request_id": ["r1", None], PREDICTION_PARTITION: ["2026-03-20"] * 2})
    labels = labels_frame(
        [("r1", 1, "2026-03-20"), ("r1", None, "2026-03-21"), (None, 0, "2026-03-20")]
    )
    joined = join_labels(
        preds, labels, request_id="request_id", label="churned", task="binary_classification"
    )
    assert joined.labelled["label"].tolist() == [1]
    assert (joined.labelled_rows, joined.unlabelled_rows, joined.invalid) == (1, 1, 1)


def test_request_ids_read_as_numbers_still_match_strings():
    preds = pd.DataFrame({"request_id": ["1", "2"], PREDICTION_PARTITION: ["2026-03-20"] * 2})
    labels = labels_frame([(1, 1, "2026-03-20")])
    joined = join_labels(preds, labels, request_id="request_id", label="churned")
    assert joined.labelled_rows == 1


def test_labelled_count():
    labels = labels_frame([("r1", 1, "2026-03-20"), ("r3", 0, "2026-03-20")])
    ids = pd.Series(["r1", "r2", "r3", "r4", "r1"])
    assert labelled_count(ids, labels, "request_id") == 3
    with pytest.raises(DataError, match="request_id"):
        labelled_count(ids, labels.rename(columns={"request_id": "id"}), "request_id")
