"""The domain classifier sees joint changes that per-column tests cannot, and no change as none."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.core.drift import DriftVerdict
from orchestrator.core.errors import DataError, NotFittedError
from orchestrator.core.multivariate import (
    DomainClassifierDetector,
    MultivariatePolicy,
    MultivariateResult,
)
from orchestrator.core.spec import FeatureKind

NUM, CAT = FeatureKind.NUMERICAL, FeatureKind.CATEGORICAL
COLUMNS = {"x": NUM, "y": NUM, "z": NUM, "plan": CAT}
PLANS = ["basic", "plus", "pro", "team"]


def draw(seed: int, rows: int = 20_000, correlation: float = 0.6, z_shift: float = 0.0):
    """x, y standard normals with the given correlation, an independent z, and a plan label."""
    rng = np.random.default_rng(seed)
    x, noise = rng.standard_normal((2, rows))
    return pd.DataFrame(
        {
            "x": x,
            "y": correlation * x + np.sqrt(1 - correlation**2) * noise,
            "z": rng.standard_normal(rows) + z_shift,
            "plan": rng.choice(PLANS, size=rows, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


def judge(reference: pd.DataFrame, current: pd.DataFrame, **policy) -> MultivariateResult:
    detector = DomainClassifierDetector(COLUMNS, MultivariatePolicy(enabled=True, **policy))
    return detector.fit(reference).compare(current)


def test_same_distribution_is_indistinguishable():
    result = judge(draw(seed=1), draw(seed=2))
    assert result.verdict is DriftVerdict.OK
    assert 0.45 <= result.statistic <= 0.55
    assert result.reason.startswith(f"AUROC {result.statistic:.3f} within warn band [0.45, 0.60]")
    # Both sides were sampled down to the policy's bound, but the counts are of the rows given.
    assert (result.n_reference, result.n_current) == (20_000, 20_000)


def test_correlation_flip_is_drift_though_every_marginal_is_unchanged():
    reference, current = draw(seed=3, correlation=0.8), draw(seed=4, correlation=-0.8)
    # Each column on its own has the same distribution on both sides, so KS, PSI and every
    # other per-column test are blind to this change; only the joint distribution moved.
    for column in ("x", "y", "z"):
        assert stats.ks_2samp(reference[column], current[column]).statistic < 0.03

    result = judge(reference, current)

    assert result.verdict is DriftVerdict.DRIFT
    assert result.statistic > 0.65
    assert "outside error band [0.45, 0.65]: a classifier tells current rows" in result.reason
    assert {name for name, _ in result.top_features[:2]} == {"x", "y"}


@pytest.fixture(scope="module")
def shifted():
    """The current side's z moved up by one standard deviation; nothing else changed."""
    return draw(seed=5), draw(seed=6, z_shift=1.0)


def test_mean_shift_is_drift_and_names_the_column(shifted):
    result = judge(*shifted)
    assert result.verdict is DriftVerdict.DRIFT
    assert result.statistic > 0.65
    assert result.top_features[0][0] == "z"
    assert len(result.top_features) <= 5
    importances = [importance for _, importance in result.top_features]
    assert importances == sorted(importances, reverse=True)


def test_bands_from_the_policy_decide_the_verdict(shifted):
    result = judge(*shifted, warn_band=(0.45, 0.70), error_band=(0.20, 0.95))
    assert result.verdict is DriftVerdict.WARN
    assert "outside warn band [0.45, 0.70]" in result.reason
    assert (result.warn_band, result.error_band) == ((0.45, 0.70), (0.20, 0.95))


def test_high_cardinality_category_does_not_look_drifted():
    # 3000 equally likely ids: most of the current sample's ids are missing from the reference
    # sample. A vocabulary learned on the reference alone would mark only current rows as
    # "unseen" and a classifier would learn that (AUROC ~0.59 here); counting both sides does not.
    columns = {"x": NUM, "account": CAT}
    ids = np.array([f"acct-{i}" for i in range(3000)])
    reference, current = (
        pd.DataFrame({"x": rng.standard_normal(20_000), "account": rng.choice(ids, 20_000)})
        for rng in (np.random.default_rng(7), np.random.default_rng(8))
    )
    result = DomainClassifierDetector(columns).fit(reference).compare(current)
    assert result.verdict is DriftVerdict.OK
    assert 0.45 <= result.statistic <= 0.55


def test_new_category_is_drift():
    reference, current = draw(seed=9, rows=5_000), draw(seed=10, rows=5_000)
    # Rows with the new label are told apart perfectly and the rest not at all, so the AUROC is
    # about 0.5 + share / 2: a 40% share lands near 0.70.
    current.loc[current.index[:2_000], "plan"] = "enterprise"
    result = judge(reference, current)
    assert result.verdict is DriftVerdict.DRIFT
    assert result.top_features[0][0] == "plan"


def test_too_few_rows_is_insufficient_data():
    result = judge(draw(seed=11, rows=2_000), draw(seed=12, rows=312))
    assert result.verdict is DriftVerdict.INSUFFICIENT_DATA
    assert result.statistic is None
    assert result.top_features == ()
    assert result.reason == "312 current rows; at least 500 needed"


def test_too_small_reference_is_insufficient_data_not_an_error():
    result = judge(draw(seed=13, rows=200), draw(seed=14, rows=300))
    assert result.verdict is DriftVerdict.INSUFFICIENT_DATA
    assert result.reason == "300 current and 200 reference rows; at least 500 needed"


def test_missing_current_column_is_invalid_and_named():
    result = judge(draw(seed=15, rows=1_000), draw(seed=16, rows=1_000).drop(columns="y"))
    assert result.verdict is DriftVerdict.INVALID
    assert result.statistic is None
    assert result.reason == "current data: columns ['y'] are missing"


def test_text_in_a_numerical_column_is_invalid():
    current = draw(seed=17, rows=1_000).assign(z="high")
    result = judge(draw(seed=18, rows=1_000), current)
    assert result.verdict is DriftVerdict.INVALID
    assert "column 'z' should be numerical" in result.reason


def test_missing_reference_column_raises_naming_it():
    with pytest.raises(DataError, match="'plan'"):
        DomainClassifierDetector(COLUMNS).fit(draw(seed=19, rows=100).drop(columns="plan"))


def test_compare_before_fit_raises():
    with pytest.raises(NotFittedError):
        DomainClassifierDetector(COLUMNS).compare(draw(seed=20, rows=100))


def test_result_is_json_serialisable(shifted):
    reference, current = shifted
    small = judge(reference.iloc[:1_000], current.iloc[:1_000], sample_rows=1_000, folds=3)
    record = json.loads(json.dumps(small.to_dict()))
    assert record["method"] == "domain_classifier"
    assert record["verdict"] == "drift"
    assert record["top_features"][0]["column"] == "z"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"folds": 1}, "folds must be between 2 and 20"),
        ({"folds": 21}, "folds must be between 2 and 20"),
        ({"sample_rows": 99}, "sample_rows must be at least 100"),
        ({"min_rows": 3}, "min_rows must be at least folds"),
        ({"warn_band": (0.6, 0.45)}, "warn_band must satisfy 0 <= low < high <= 1"),
        ({"error_band": (0.45, 1.2)}, "error_band must satisfy 0 <= low < high <= 1"),
        ({"error_band": (0.5, 0.65)}, "error_band (0.5, 0.65) must contain warn_band"),
        ({"seeds": 1}, "seeds\n  Extra inputs are not permitted"),
    ],
)
def test_policy_errors_name_the_field(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MultivariatePolicy(**fields)
