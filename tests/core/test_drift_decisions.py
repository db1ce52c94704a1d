"""Decisions that don't cry wolf: quiet on unchanged data, and every real change found and named."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.core.drift import DriftDetector, DriftSpec, DriftVerdict, apply_persistence
from orchestrator.core.gates import GateVerdict, evaluate_drift
from orchestrator.core.spec import DriftPolicy, FeatureKind

NUM, CAT = FeatureKind.NUMERICAL, FeatureKind.CATEGORICAL


def wide_frame(rows: int, seed: int) -> pd.DataFrame:
    """The benchmark's shape: 20 numerical (normal, lognormal, 1% nulls), 5 categorical."""
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(20):
        values = rng.normal(size=rows) if i < 10 else rng.lognormal(size=rows)
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"x{i}"] = values
    for i, cardinality in enumerate((5, 5, 50, 50, 1000)):
        weights = 1.0 / np.arange(1, cardinality + 1)
        codes = rng.choice(cardinality, size=rows, p=weights / weights.sum())
        columns[f"k{i}"] = pd.Categorical.from_codes(
            codes, categories=[f"v{k}" for k in range(cardinality)]
        )
    return pd.DataFrame(columns)


def kinds(frame: pd.DataFrame) -> dict[str, FeatureKind]:
    return {c: CAT if c.startswith("k") else NUM for c in frame.columns}


@pytest.fixture(scope="module")
def million() -> tuple[DriftDetector, pd.DataFrame]:
    reference = wide_frame(1_000_000, seed=1)
    return DriftDetector(DriftSpec(columns=kinds(reference))).fit(reference), reference


def test_no_alert_on_a_million_rows_from_the_same_distribution(million):
    detector, _ = million
    report = detector.compare(wide_frame(1_000_000, seed=2))
    assert report.verdict is DriftVerdict.OK, report.to_frame().query("verdict != 'ok'")
    assert evaluate_drift(report).verdict is GateVerdict.PASS


def inject(frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, str]:
    """Modest, realistic drifts, each in one column; returns which column got which."""
    frame["x0"] += 0.6  # mean shift of 0.6 std
    frame["x11"] *= 1.5  # scale change of a lognormal
    frame.loc[rng.random(len(frame)) < 0.08, "x5"] = np.nan  # null rate 1% -> 9%
    k1 = frame["k1"].astype(str)
    k1[rng.random(len(frame)) < 0.25] = "v4"  # the rarest of 5 categories takes a quarter
    frame["k1"] = k1
    k3 = frame["k3"].astype(str)
    k3[rng.random(len(frame)) < 0.1] = "brand-new"  # 10% in a category never seen
    frame["k3"] = k3
    return {
        "x0": "ks",
        "x11": "wasserstein",
        "x5": "null_rate",
        "k1": "chi_square",
        "k3": "unseen_share",
    }


def test_every_injected_drift_is_found_and_nothing_else(million):
    detector, _ = million
    current = wide_frame(200_000, seed=3)
    injected = inject(current, np.random.default_rng(4))
    report = detector.compare(current)
    assert sorted(report.drifted_columns) == sorted(injected)
    for column, method in injected.items():
        result = next(c for c in report.columns if c.column == column)
        verdicts = {m.method: m.verdict for m in result.methods}
        assert verdicts[method] is DriftVerdict.DRIFT, (column, result.methods)


def test_drift_confined_to_one_segment_is_found_and_named():
    rng = np.random.default_rng(6)

    def data(rows: int, eu_shift: float) -> pd.DataFrame:
        region = rng.choice(["eu", "us", "apac", "latam"], rows, p=[0.15, 0.45, 0.3, 0.1])
        x = rng.normal(size=rows) + np.where(region == "eu", eu_shift, 0.0)
        return pd.DataFrame({"x": x, "region": region})

    spec = DriftSpec(columns={"x": NUM, "region": CAT}, segments=["region"])
    detector = DriftDetector(spec).fit(data(100_000, 0.0))
    report = detector.compare(data(40_000, 0.8))
    assert report.drifted_columns == []  # diluted in the whole population
    assert report.drifted_segments == ["region=eu"]
    gate = evaluate_drift(report)
    assert gate.verdict is GateVerdict.BLOCK and "segment region=eu" in gate.reason
    assert gate.metrics["worst_column"] == "x in region=eu"  # what decided, not the whole
    assert report.to_records()[0]["segment"] == "(all)"
    assert any(r["segment"] == "region=eu" and r["verdict"] == "drift" for r in report.to_records())


def test_segment_crosses_and_minimum_support():
    rng = np.random.default_rng(7)

    def data(rows: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(size=rows),
                "region": rng.choice(["eu", "us"], rows),
                "plan": rng.choice(["free", "pro"], rows, p=[0.97, 0.03]),
            }
        )

    spec = DriftSpec(
        columns={"x": NUM, "region": CAT, "plan": CAT},
        segments=["region", "plan"],
        policy=DriftPolicy(segment_crosses=[["region", "plan"]], min_segment_rows=500),
    )
    report = DriftDetector(spec).fit(data(50_000)).compare(data(10_000))
    by_name = {s.segment: s for s in report.segments}
    assert "region=eu&plan=free" in by_name and "plan=pro" in by_name
    assert by_name["plan=pro"].verdict is DriftVerdict.INSUFFICIENT_DATA  # about 300 rows
    assert report.verdict is DriftVerdict.OK  # too little support is reported, never a block


def test_a_correlation_only_change_is_found_by_the_multivariate_detector_alone():
    rng = np.random.default_rng(8)

    def correlated(rows: int, rho: float) -> pd.DataFrame:
        x, y = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], rows).T
        return pd.DataFrame({"x": x, "y": y})

    policy = DriftPolicy(multivariate={"enabled": True})
    detector = DriftDetector(DriftSpec(columns={"x": NUM, "y": NUM}, policy=policy))
    detector.fit(correlated(20_000, 0.8))
    current = correlated(20_000, -0.8)
    report = detector.compare(current)
    assert report.drifted_columns == []
    assert all(c.verdict is DriftVerdict.OK for c in report.columns)
    assert report.multivariate_drift and report.multivariate.statistic > 0.65
    assert report.verdict is DriftVerdict.DRIFT
    gate = evaluate_drift(report)
    assert "joint distribution" in gate.reason
    assert gate.metrics["worst_column"] == "(joint distribution)"
    assert gate.metrics["worst_statistic"] == report.multivariate.statistic
    unchanged = detector.compare(correlated(20_000, 0.8))
    assert unchanged.verdict is DriftVerdict.OK


def test_learned_thresholds_come_from_reference_chunks():
    rng = np.random.default_rng(9)
    # Day-to-day wobble of the mean: fixed thresholds would be too strict or too loose;
    # learned ones know how much this feature moves between ordinary days.
    days = [rng.normal(loc=rng.normal(0, 0.15), size=2_000) for _ in range(20)]
    reference = pd.DataFrame({"x": np.concatenate(days)})
    policy = DriftPolicy(learned_thresholds={"chunks": 20}, min_rows=500)
    detector = DriftDetector(DriftSpec(columns={"x": NUM}, policy=policy)).fit(reference)
    ks = detector.thresholds_["x"]["ks"]
    assert ks.learned and ks.warn < ks.error
    assert detector.thresholds_["x"]["null_rate"].learned is False  # not in learned methods
    ordinary = detector.compare(pd.DataFrame({"x": rng.normal(loc=0.1, size=2_000)}))
    assert ordinary.verdict is DriftVerdict.OK
    shifted = detector.compare(pd.DataFrame({"x": rng.normal(loc=1.0, size=2_000)}))
    assert shifted.drifted_columns == ["x"]
    assert "learned error level" in shifted.columns[0].worst.reason


def test_p_value_methods_are_opt_in_and_benjamini_hochberg_corrected():
    rng = np.random.default_rng(10)
    columns = {f"x{i}": NUM for i in range(20)}
    policy = DriftPolicy(numerical_methods=["ks_test"], min_rows=100)
    reference = pd.DataFrame({c: rng.normal(size=3_000) for c in columns})
    current = pd.DataFrame({c: rng.normal(size=3_000) for c in columns})
    current["x0"] += 0.3
    report = (
        DriftDetector(DriftSpec(columns=columns, policy=policy)).fit(reference).compare(current)
    )
    assert report.drifted_columns == ["x0"]
    raw = np.array(
        [stats.ks_2samp(reference[c], current[c], method="asymp").pvalue for c in columns]
    )
    adjusted = stats.false_discovery_control(raw, method="bh")
    reported = [c.methods[0].statistic for c in report.columns]
    np.testing.assert_allclose(reported, adjusted, rtol=0.05, atol=1e-3)
    assert "BH-adjusted" in report.columns[0].methods[0].reason


def test_chi_square_test_matches_scipy_contingency_p_value():
    reference = pd.DataFrame({"c": ["a"] * 500 + ["b"] * 500})
    current = pd.DataFrame({"c": ["a"] * 450 + ["b"] * 550})
    policy = DriftPolicy(categorical_methods=["chi_square_test"], min_rows=10)
    report = (
        DriftDetector(DriftSpec(columns={"c": CAT}, policy=policy)).fit(reference).compare(current)
    )
    expected = stats.chi2_contingency([[500, 500], [450, 550]], correction=False).pvalue
    assert report.columns[0].methods[0].statistic == pytest.approx(expected)


def test_persistence_needs_m_breaches_in_the_last_n_windows():
    rng = np.random.default_rng(11)
    reference = pd.DataFrame({"x": rng.normal(size=20_000)})
    detector = DriftDetector(DriftSpec(columns={"x": NUM})).fit(reference)
    calm = detector.compare(pd.DataFrame({"x": rng.normal(size=5_000)}))
    shifted = [detector.compare(pd.DataFrame({"x": rng.normal(1, size=5_000)})) for _ in range(2)]

    first = apply_persistence([calm, shifted[0]], m=2, n=3)
    assert first.drifted_columns == [] and first.verdict is DriftVerdict.WARN
    assert "breached in 1 of the last 2 windows, 2 needed" in first.columns[0].worst.reason
    second = apply_persistence([calm, shifted[0], shifted[1]], m=2, n=3)
    assert second.drifted_columns == ["x"]
    assert apply_persistence([shifted[0]], m=1, n=1) is shifted[0]


def test_learned_thresholds_keep_the_fixed_levels_when_the_reference_never_varies():
    reference = pd.DataFrame({"x": np.ones(20_000)})
    policy = DriftPolicy(learned_thresholds={"chunks": 10})
    detector = DriftDetector(DriftSpec(columns={"x": NUM}, policy=policy)).fit(reference)
    assert not detector.thresholds_["x"]["ks"].learned
    assert detector.compare(pd.DataFrame({"x": np.ones(5_000)})).verdict is DriftVerdict.OK


def test_segment_only_drift_is_a_breach_and_unjudgeable_data_blocks():
    rng = np.random.default_rng(14)
    region = rng.choice(["eu", "us"], 20_000, p=[0.15, 0.85])
    reference = pd.DataFrame({"x": rng.normal(size=20_000), "region": region})
    spec = DriftSpec(columns={"x": NUM, "region": CAT}, segments=["region"])
    detector = DriftDetector(spec).fit(reference)
    current = reference.sample(8_000, random_state=1).reset_index(drop=True)
    current.loc[current["region"] == "eu", "x"] += 0.8
    drifted = evaluate_drift(detector.compare(current))
    assert drifted.verdict is GateVerdict.BLOCK and drifted.metrics["drift_breach"] is True
    assert drifted.metrics["drifted_columns"] == 0  # a breach all the same

    invalid = detector.compare(current.assign(x=current["x"].astype(str)))
    gate = evaluate_drift(invalid)
    assert gate.verdict is GateVerdict.BLOCK and "cannot judge" in gate.reason


def test_an_enabled_multivariate_check_given_only_a_profile_says_so():
    rng = np.random.default_rng(15)
    reference = pd.DataFrame({"x": rng.normal(size=5_000), "y": rng.normal(size=5_000)})
    policy = DriftPolicy(multivariate={"enabled": True})
    detector = DriftDetector(DriftSpec(columns={"x": NUM, "y": NUM}, policy=policy))
    report = detector.fit(reference).compare(detector.profile(reference))
    assert report.multivariate.verdict is DriftVerdict.INSUFFICIENT_DATA
    assert "no current rows" in report.multivariate.reason
    assert report.verdict is DriftVerdict.OK  # reported, not blocking
