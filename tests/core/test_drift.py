"""Drift statistics against known values, and the detector's judgement."""

import numpy as np
import pandas as pd
import pytest

from orchestrator.core.drift import (
    DriftDetector,
    DriftSpec,
    DriftVerdict,
    get_method,
    population_stability_index,
)
from orchestrator.core.errors import DataError, NotFittedError, UnknownMethodError
from orchestrator.core.spec import DriftPolicy, FeatureKind

NUM, CAT = FeatureKind.NUMERICAL, FeatureKind.CATEGORICAL


def detector(columns: dict, **policy) -> DriftDetector:
    return DriftDetector(DriftSpec(columns=columns, policy=DriftPolicy(min_rows=1, **policy)))


def statistic(report, column: str, method: str) -> float:
    column_result = next(c for c in report.columns if c.column == column)
    return next(m.statistic for m in column_result.methods if m.method == method)


def test_psi_by_hand():
    # (0.5-0.25)ln(2) + 0 + (0.25-0.5)ln(0.5) = 0.5 ln 2
    psi = population_stability_index(np.array([0.25, 0.25, 0.5]), np.array([0.5, 0.25, 0.25]))
    assert psi == pytest.approx(0.5 * np.log(2))


def test_psi_on_quantile_bins_of_the_reference():
    # Reference 1..8 cut into 2 bins at its median (4.5); current puts 3 of 4 values above it.
    reference = pd.DataFrame({"x": np.arange(1.0, 9.0)})
    current = pd.DataFrame({"x": [1.0, 5.0, 6.0, 7.0]})
    report = detector({"x": NUM}, bins=2).fit(reference).compare(current)
    expected = population_stability_index(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.75, 0.0]))
    assert statistic(report, "x", "psi") == pytest.approx(expected)
    assert expected == pytest.approx(0.25 * np.log(3))


def test_ks_matches_hand_computed_maximum_cdf_gap():
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    current = pd.DataFrame({"x": [3.0, 4.0, 5.0, 6.0]})
    report = detector({"x": NUM}).fit(reference).compare(current)
    assert statistic(report, "x", "ks") == pytest.approx(0.5)


def test_ks_matches_scipys_own_two_sample_case():
    # scipy's TestKSTwoSamples: x = linspace(1, 100, 100), y = x + 2.1 gives D = 3/100.
    x = np.linspace(1, 100, 100)
    report = (
        detector({"x": NUM}).fit(pd.DataFrame({"x": x})).compare(pd.DataFrame({"x": x + 2 + 0.1}))
    )
    assert statistic(report, "x", "ks") == pytest.approx(3.0 / 100)


def test_wasserstein_is_scipy_example_divided_by_reference_std():
    # scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0 (scipy's documented example)
    reference = pd.DataFrame({"x": [0.0, 1.0, 3.0]})
    current = pd.DataFrame({"x": [5.0, 6.0, 8.0]})
    report = detector({"x": NUM}).fit(reference).compare(current)
    assert statistic(report, "x", "wasserstein") == pytest.approx(5.0 / np.std([0.0, 1.0, 3.0]))


def test_jensen_shannon_matches_scipy_documented_value_on_categories():
    # scipy.spatial.distance.jensenshannon([1, 0], [0.5, 0.5]) == 0.46450140402245893 (base e);
    # in base 2 that is 0.4645... / sqrt(ln 2).
    reference = pd.DataFrame({"c": ["a"] * 10})
    current = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 5})
    report = detector({"c": CAT}).fit(reference).compare(current)
    expected = 0.46450140402245893 / np.sqrt(np.log(2))
    assert statistic(report, "c", "jensen_shannon") == pytest.approx(expected)


def test_disjoint_categories_have_jensen_shannon_distance_one():
    # scipy's example: jensenshannon([1, 0, 0], [0, 1, 0], 2.0) == 1.0
    report = (
        detector({"c": CAT})
        .fit(pd.DataFrame({"c": ["a"] * 4}))
        .compare(pd.DataFrame({"c": ["b"] * 4}))
    )
    assert statistic(report, "c", "jensen_shannon") == pytest.approx(1.0)
    assert statistic(report, "c", "unseen_share") == pytest.approx(1.0)


def test_chi_square_is_bias_corrected_cohens_w():
    # p_ref = (0.5, 0.5), p_cur = (0.3, 0.7): w^2 = 0.04/0.5 + 0.04/0.5 = 0.16; the sampling
    # noise (k - 1)(1/n_cur + 1/n_ref) = 1/100 + 1/100 is subtracted.
    current = pd.DataFrame({"c": ["a"] * 30 + ["b"] * 70})
    reference = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    report = detector({"c": CAT}).fit(reference).compare(current)
    assert statistic(report, "c", "chi_square") == pytest.approx(np.sqrt(0.16 - 0.02))


def test_chi_square_does_not_depend_on_sample_size():
    current = pd.DataFrame({"c": ["a"] * 3_000 + ["b"] * 7_000})
    values = []
    for size in (5_000, 500_000):
        reference = pd.DataFrame({"c": ["a"] * size + ["b"] * size})
        values.append(
            statistic(detector({"c": CAT}).fit(reference).compare(current), "c", "chi_square")
        )
    assert values[0] == pytest.approx(values[1], abs=1e-3)
    assert values[0] == pytest.approx(0.4, abs=1e-3)


def test_chi_square_stays_quiet_on_small_samples_of_the_same_distribution():
    rng = np.random.default_rng(8)
    categories = [f"k{i}" for i in range(20)]
    reference = pd.DataFrame({"c": rng.choice(categories, 3_000)})
    fitted = detector({"c": CAT}).fit(reference)
    values = [
        statistic(
            fitted.compare(pd.DataFrame({"c": rng.choice(categories, 1_500)})), "c", "chi_square"
        )
        for _ in range(30)
    ]
    # Uncorrected, w would sit around sqrt(19 * (1/1500 + 1/3000)) = 0.14, above the 0.1 warn
    # level on nearly every window; corrected, the typical window is well below it.
    assert np.median(values) < 0.07
    assert np.mean(np.array(values) >= 0.1) <= 0.2


def test_unseen_categories_are_unseen_shares_job_not_chi_squares():
    unseen = (
        detector({"c": CAT})
        .fit(pd.DataFrame({"c": ["a", "b"] * 50}))
        .compare(pd.DataFrame({"c": ["a", "b"] * 50 + ["z"] * 100}))
    )
    assert statistic(unseen, "c", "chi_square") == pytest.approx(0.0)
    assert statistic(unseen, "c", "unseen_share") == pytest.approx(0.5)


def test_null_rate_change_is_absolute_difference():
    reference = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0]})
    current = pd.DataFrame({"x": [np.nan, np.nan, 3.0, 4.0]})
    report = detector({"x": NUM}).fit(reference).compare(current)
    assert statistic(report, "x", "null_rate") == pytest.approx(0.25)


def test_same_distribution_passes_and_shifted_distribution_drifts():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=20_000), "c": rng.choice(list("abc"), 20_000)})
    same = pd.DataFrame({"x": rng.normal(size=5_000), "c": rng.choice(list("abc"), 5_000)})
    shifted = same.assign(x=same["x"] + 1.0)
    fitted = DriftDetector(DriftSpec(columns={"x": NUM, "c": CAT})).fit(reference)
    assert fitted.compare(same).verdict is DriftVerdict.OK
    drifted = fitted.compare(shifted)
    assert drifted.drifted_columns == ["x"]
    assert drifted.ranked()[0].column == "x"


def test_every_result_carries_method_statistic_and_threshold_applied():
    policy = {"thresholds": {"psi": {"warn": 0.05, "error": 0.5}}}
    reference = pd.DataFrame({"x": np.arange(1000.0)})
    report = detector({"x": NUM}, **policy).fit(reference).compare(reference)
    psi = next(m for m in report.columns[0].methods if m.method == "psi")
    assert (psi.threshold.warn, psi.threshold.error) == (0.05, 0.5)
    assert psi.verdict is DriftVerdict.OK and "warn level 0.05" in psi.reason
    frame = report.to_frame()
    assert set(frame.columns) >= {"column", "method", "statistic", "warn", "error", "verdict"}


def test_below_minimum_rows_is_insufficient_data_never_ok():
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(size=1000)})
    small = DriftDetector(DriftSpec(columns={"x": NUM}, policy=DriftPolicy(min_rows=200)))
    report = small.fit(reference).compare(reference.head(50))
    assert report.columns[0].verdict is DriftVerdict.INSUFFICIENT_DATA
    assert "at least 200" in report.columns[0].worst.reason


def test_missing_and_mistyped_columns_are_invalid():
    fitted = detector({"x": NUM, "c": CAT}).fit(pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]}))
    report = fitted.compare(pd.DataFrame({"x": ["one", "two"]}))
    verdicts = {c.column: c.verdict for c in report.columns}
    assert verdicts == {"x": DriftVerdict.INVALID, "c": DriftVerdict.INVALID}
    reasons = {c.column: c.worst.reason for c in report.columns}
    assert "missing" in reasons["c"] and "numerical" in reasons["x"]


def test_use_before_fit_raises():
    with pytest.raises(NotFittedError):
        detector({"x": NUM}).compare(pd.DataFrame({"x": [1.0]}))


def test_reference_without_a_watched_column_raises_naming_it():
    with pytest.raises(DataError, match="x2"):
        detector({"x": NUM, "x2": NUM}).fit(pd.DataFrame({"x": [1.0]}))


def test_unknown_method_lists_valid_names():
    with pytest.raises(UnknownMethodError, match="valid methods: .*psi"):
        get_method("psy", NUM)
    with pytest.raises(UnknownMethodError, match="does not apply to categorical"):
        get_method("ks", CAT)


def test_policy_with_unknown_method_fails_validation_naming_it():
    with pytest.raises(ValueError, match="unknown drift method 'psy'"):
        DriftPolicy(numerical_methods=["psy"])


def test_integer_coded_categories_match_when_a_null_makes_them_float():
    reference = pd.DataFrame({"c": pd.Series([1, 2, 3] * 100)})
    current = pd.DataFrame({"c": pd.Series([1.0, 2.0, 3.0] * 100 + [np.nan])})
    report = detector({"c": CAT}).fit(reference).compare(current)
    assert statistic(report, "c", "unseen_share") == 0.0
    assert report.columns[0].verdict is DriftVerdict.OK


def test_a_full_replacement_of_categories_drifts_even_without_unseen_share():
    fitted = detector({"c": CAT}, categorical_methods=["chi_square"]).fit(
        pd.DataFrame({"c": ["a", "b"] * 50})
    )
    report = fitted.compare(pd.DataFrame({"c": ["x", "y"] * 50}))
    assert report.drifted_columns == ["c"]


def test_no_blocking_false_alarm_on_same_distribution_at_default_minimum_rows():
    """200 daily windows at the default min_rows (1000) against a 14-day reference, drawn from
    the very distribution of the reference: not one may block."""
    rng = np.random.default_rng(12)
    categories = [f"k{i}" for i in range(12)]
    weights = rng.dirichlet(np.ones(12))

    def draw(n: int) -> pd.DataFrame:
        values = rng.lognormal(size=n)
        values[rng.random(n) < 0.02] = np.nan
        return pd.DataFrame({"x": values, "c": rng.choice(categories, n, p=weights)})

    policy = DriftPolicy()
    assert policy.min_rows == 1000
    fitted = DriftDetector(DriftSpec(columns={"x": NUM, "c": CAT}, policy=policy)).fit(draw(14_000))
    verdicts = [fitted.compare(draw(1_000)).verdict for _ in range(200)]
    assert DriftVerdict.DRIFT not in verdicts
    assert verdicts.count(DriftVerdict.WARN) <= 20
