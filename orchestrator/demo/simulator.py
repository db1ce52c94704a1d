"""A seeded simulator of a churn-prediction service: daily features, delayed labels, drift.

From `drift_day` on, three things change at once in the inputs (a mean shift in
`monthly_charges`, a new `payment_method` category, more nulls in `avg_session_minutes`) and
the relation between inputs and churn changes too, so the champion's quality drops.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.adapters.partition_store import write_parquet_atomically

PLANS = ["basic", "standard", "premium", "family"]
CONTRACTS = ["monthly", "annual", "two_year"]
PAYMENTS = ["card", "bank_transfer", "paypal", "invoice"]
NEW_PAYMENT = "crypto_wallet"
REGIONS = ["north", "south", "east", "west"]
CHANNELS = ["web", "app", "store", "partner"]


@dataclass(frozen=True)
class Scenario:
    """`days` days from `start`; the first `reference_days` are labelled history."""

    start: dt.date
    days: int = 30
    drift_day: int = 21
    seed: int = 7
    rows_per_day: int = 1500
    reference_days: int = 14
    label_delay_days: int = 2
    approval_delay_days: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.reference_days < self.drift_day <= self.days:
            raise ValueError(
                f"need 0 < reference days ({self.reference_days}) < drift day "
                f"({self.drift_day}) <= days ({self.days})"
            )
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        if self.date(self.days) > yesterday:
            raise ValueError(
                f"{self.days} days from {self.start} end after yesterday ({yesterday}): "
                "daily partitions only exist for completed days"
            )

    def date(self, day: int) -> dt.date:
        """Calendar date of scenario day `day` (1-based)."""
        return self.start + dt.timedelta(days=day - 1)

    def drifted(self, day: int) -> bool:
        return day >= self.drift_day


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_day(scenario: Scenario, day: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, labels) of one day; the same day and seed always give the same rows."""
    rng = np.random.default_rng([scenario.seed, day])
    n = scenario.rows_per_day
    drifted = scenario.drifted(day)
    date = scenario.date(day)
    tenure = rng.gamma(2.0, 14.0, n).clip(0, 240)
    monthly = rng.normal(95.0 if drifted else 70.0, 20.0, n).clip(5, None)
    payment_p = [0.3, 0.25, 0.2, 0.1, 0.15] if drifted else [0.35, 0.3, 0.2, 0.15, 0.0]
    session = rng.normal(25.0, 8.0, n).clip(0, None)
    session[rng.random(n) < (0.15 if drifted else 0.04)] = np.nan
    features = pd.DataFrame(
        {
            "request_id": [f"{date.isoformat()}-{i:06d}" for i in range(n)],
            "timestamp": pd.Timestamp(date, tz="UTC")
            + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), unit="s"),
            "tenure_months": tenure.round(1),
            "monthly_charges": monthly.round(2),
            "total_charges": (tenure * monthly * rng.uniform(0.9, 1.1, n)).round(2),
            "support_calls": rng.poisson(1.2, n).astype(float),
            "data_usage_gb": rng.lognormal(2.5, 0.6, n).round(2),
            "avg_session_minutes": session.round(1),
            "late_payments": rng.poisson(0.3, n).astype(float),
            "discount_pct": rng.choice([0.0, 5.0, 10.0, 20.0], n, p=[0.6, 0.2, 0.15, 0.05]),
            "age": rng.normal(42.0, 12.0, n).clip(18, 90).round(0),
            "satisfaction_score": rng.normal(7.0, 1.5, n).clip(0, 10).round(1),
            "plan": rng.choice(PLANS, n, p=[0.35, 0.35, 0.2, 0.1]),
            "contract_type": rng.choice(CONTRACTS, n, p=[0.55, 0.3, 0.15]),
            "payment_method": rng.choice(PAYMENTS + [NEW_PAYMENT], n, p=payment_p),
            "region": rng.choice(REGIONS, n),
            "channel": rng.choice(CHANNELS, n, p=[0.4, 0.35, 0.15, 0.1]),
        }
    )
    churned = rng.random(n) < _sigmoid(_churn_logit(features, drifted))
    labels = pd.DataFrame({"request_id": features["request_id"], "churned": churned.astype(int)})
    return features, labels


def _churn_logit(f: pd.DataFrame, drifted: bool) -> np.ndarray:
    """Before drift, churn follows tenure, calls, satisfaction and contract; after it, price
    sensitivity and the new payment method dominate and the contract effect reverses."""
    monthly_contract = (f["contract_type"] == "monthly").to_numpy()
    base = (
        -0.04 * f["tenure_months"].to_numpy()
        + 0.35 * f["support_calls"].to_numpy()
        - 0.45 * (f["satisfaction_score"].to_numpy() - 7.0)
        + 0.5 * f["late_payments"].to_numpy()
    )
    if not drifted:
        return base + 1.2 * monthly_contract - 0.6
    return (
        base
        + 0.06 * (f["monthly_charges"].to_numpy() - 95.0)
        + 1.8 * (f["payment_method"] == NEW_PAYMENT).to_numpy()
        - 1.2 * monthly_contract
        + 0.2
    )


def labels_arriving(scenario: Scenario, day: int) -> pd.DataFrame:
    """The labels that arrive on scenario day `day`, keyed by request id.

    The reference window arrives labelled (history). After it, a day's labels arrive
    `label_delay_days` later, with three things a real label feed does: a fifth of the first
    monitored day's labels arrive four days late, a tenth of the second day's are sent again
    on the fifth, and every delivery carries a few request ids no prediction has.
    """
    s = scenario
    if day <= s.reference_days:
        return simulate_day(s, day)[1]
    first, second = s.reference_days + 1, s.reference_days + 2
    parts = []
    for labelled_day in range(max(first, day - s.label_delay_days - 5), day + 1):
        truth = simulate_day(s, labelled_day)[1]
        late = truth.index % 5 == 0 if labelled_day == first else truth.index < 0
        if labelled_day + s.label_delay_days == day:
            parts.append(truth[~late])
        if labelled_day == first and labelled_day + s.label_delay_days + 4 == day:
            parts.append(truth[late])
        if labelled_day == second and labelled_day + 5 == day:
            parts.append(truth[truth.index % 10 == 0])
    if not parts:
        return pd.DataFrame(columns=["request_id", "churned"])
    orphans = pd.DataFrame(
        {"request_id": [f"unknown-{day}-{i}" for i in range(3)], "churned": [0, 1, 0]}
    )
    return pd.concat([*parts, orphans], ignore_index=True)


def serving_events(
    scenario: Scenario, day: int, features: pd.DataFrame, scores: np.ndarray, version: str
) -> list[dict]:
    """What the serving process logs for each request of `day`: simulated latency (a slow
    day two days after the reference window, a burst of errors two days later), the
    champion's score, and who asked (a customer id and e-mail the logger must never store)."""
    rng = np.random.default_rng([scenario.seed, day, 1])
    n = len(features)
    slow = day == scenario.reference_days + 2
    latency = rng.lognormal(np.log(320.0 if slow else 45.0), 0.35, n)
    status = np.full(n, "ok", dtype=object)
    burst = day == scenario.reference_days + 4
    status[rng.random(n) < (0.08 if burst else 0.0005)] = "error"
    status[latency > 900.0] = "timeout"
    customers = rng.integers(10_000, 99_999, n)
    records = features.to_dict("records")
    events = []
    for i, row in enumerate(records):
        failed = status[i] != "ok"
        events.append(
            {
                "request_id": row["request_id"],
                "timestamp": row["timestamp"].to_pydatetime(),
                "model_version": version,
                "latency_ms": float(latency[i]),
                "status": status[i],
                "fallback": "rules_v1" if failed else None,
                "score": None if failed else float(scores[i]),
                "prediction": None if failed else float(scores[i] >= 0.5),
                "features": {k: v for k, v in row.items() if k not in ("request_id", "timestamp")},
                "subject_id": f"customer-{customers[i]}",
                "customer_email": f"customer-{customers[i]}@example.com",
            }
        )
    return events


@dataclass(frozen=True)
class Landing:
    """Writes simulated files where the monitored model's source templates expect them."""

    root: Path
    features_path: str
    labels_path: str

    def land(self, scenario: Scenario, day: int, *, features: bool, labels: bool) -> None:
        """Land day `day`'s features and/or the labels that arrive that day."""
        partition = scenario.date(day).isoformat()
        if features:
            write_parquet_atomically(
                simulate_day(scenario, day)[0],
                self.root / self.features_path.format(partition=partition),
            )
        if labels:
            arriving = labels_arriving(scenario, day)
            if len(arriving):
                write_parquet_atomically(
                    arriving, self.root / self.labels_path.format(partition=partition)
                )
