"""Profiles: exact merges, accuracy against scipy's exact statistics, and every input kind."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from orchestrator.core.drift import (
    DriftDetector,
    DriftSpec,
    DriftVerdict,
    wasserstein_error_bound,
)
from orchestrator.core.errors import DataError
from orchestrator.core.profile import Profile
from orchestrator.core.spec import DriftPolicy, FeatureKind

NUM, CAT = FeatureKind.NUMERICAL, FeatureKind.CATEGORICAL


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=rows)
    x[rng.random(rows) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "y": rng.lognormal(size=rows),
            "c": rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            "region": rng.choice(["eu", "us", "apac"], rows),
        }
    )


def fitted(reference: pd.DataFrame, **policy) -> DriftDetector:
    spec = DriftSpec(
        columns={"x": NUM, "y": NUM, "c": CAT, "region": CAT},
        segments=["region"],
        policy=DriftPolicy(min_rows=100, min_segment_rows=100, **policy),
    )
    return DriftDetector(spec).fit(reference)


def statistic(report, column: str, method: str) -> float:
    result = next(c for c in report.columns if c.column == column)
    return next(m.statistic for m in result.methods if m.method == method)


def assert_same_profile(a: Profile, b: Profile) -> None:
    assert a.n_rows == b.n_rows and a.segment_rows == b.segment_rows
    for left, right in [(a.columns, b.columns)] + [
        (a.segments[k], b.segments[k]) for k in a.segments
    ]:
        assert set(left) == set(right)
        for name in left:
            np.testing.assert_array_equal(left[name].counts, right[name].counts)
            if left[name].sums is not None:
                np.testing.assert_allclose(left[name].sums, right[name].sums, rtol=1e-9)
                assert left[name].sum_squares == pytest.approx(right[name].sum_squares)
                assert (left[name].minimum, left[name].maximum) == (
                    right[name].minimum,
                    right[name].maximum,
                )
            assert dict(left[name].unseen) == dict(right[name].unseen)


def test_merge_is_exact_profile_of_the_concatenation():
    detector = fitted(frame(20_000, seed=1))
    a, b = frame(7_000, seed=2, shift=0.3), frame(3_000, seed=3)
    b.loc[:50, "c"] = "never-seen"
    whole = detector.profile(pd.concat([a, b], ignore_index=True))
    assert_same_profile(whole, detector.profile(a).merge(detector.profile(b)))
    assert whole.columns["c"].unseen == {"never-seen": 51}
    assert set(whole.segments) == {"region=eu", "region=us", "region=apac"}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.floats(0.05, 0.95))
def test_merge_is_exact_for_any_split(seed, cut):
    detector = fitted(frame(5_000, seed=0))
    data = frame(4_000, seed=seed, shift=seed % 3 * 0.5)
    at = int(len(data) * cut)
    merged = detector.profile(data.iloc[:at]).merge(detector.profile(data.iloc[at:]))
    assert_same_profile(detector.profile(data), merged)


DISTRIBUTIONS = {
    "normal": lambda rng, n, shift, scale: rng.normal(shift, scale, n),
    "lognormal": lambda rng, n, shift, scale: rng.lognormal(shift, scale, n),
    "exponential": lambda rng, n, shift, scale: rng.exponential(scale, n) + shift,
    "uniform": lambda rng, n, shift, scale: rng.uniform(shift, shift + scale, n),
    "bimodal": lambda rng, n, shift, scale: np.concatenate(
        [rng.normal(-2, 0.5, n // 2), rng.normal(2 + shift, 0.5 * scale, n - n // 2)]
    ),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    distribution=st.sampled_from(sorted(DISTRIBUTIONS)),
    seed=st.integers(0, 2**32 - 1),
    n_reference=st.integers(1_000, 50_000),
    n_current=st.integers(1_000, 50_000),
    shift=st.floats(-1.5, 1.5),
    scale=st.floats(0.5, 2.0),
)
def test_profile_ks_and_wasserstein_are_within_0_005_of_scipys_exact_values(
    distribution, seed, n_reference, n_current, shift, scale
):
    rng = np.random.default_rng(seed)
    draw = DISTRIBUTIONS[distribution]
    reference, current = draw(rng, n_reference, 0.0, 1.0), draw(rng, n_current, shift, scale)
    spec = DriftSpec(columns={"v": NUM}, policy=DriftPolicy(min_rows=1))
    detector = DriftDetector(spec).fit(pd.DataFrame({"v": reference}))
    report = detector.compare(pd.DataFrame({"v": current}))
    exact_ks = stats.ks_2samp(reference, current).statistic
    exact_w = stats.wasserstein_distance(reference, current) / reference.std()
    binned_w = statistic(report, "v", "wasserstein")
    assert statistic(report, "v", "ks") == pytest.approx(exact_ks, abs=0.005)
    assert binned_w == pytest.approx(exact_w, abs=0.005)
    # The stated bound holds: the binned value never exceeds the exact one, nor falls short
    # of it by more than the bound.
    ref_profile = detector.reference_.columns["v"]
    bound = (
        wasserstein_error_bound(
            ref_profile,
            detector.profile(pd.DataFrame({"v": current})).columns["v"],
            detector.grids_["v"].edges,
        )
        / ref_profile.std
    )
    assert exact_w - bound - 1e-9 <= binned_w <= exact_w + 1e-9


def test_dataframe_arrow_and_parquet_inputs_give_the_same_profile(tmp_path):
    detector = fitted(frame(10_000, seed=1))
    data = frame(6_000, seed=4, shift=0.2)
    table = pa.Table.from_pandas(data, preserve_index=False)
    path = tmp_path / "day.parquet"
    pq.write_table(
        table.append_column("ignored", pa.array(["z"] * len(data))), path, row_group_size=1_000
    )
    expected = detector.profile(data)
    assert_same_profile(expected, detector.profile(table))
    assert_same_profile(expected, detector.profile(path))
    from_path, from_profile = (detector.compare(x).to_frame() for x in (path, expected))
    assert from_path["verdict"].tolist() == from_profile["verdict"].tolist()
    # Sums add up in another order across row groups: equal up to rounding.
    np.testing.assert_allclose(from_path["statistic"], from_profile["statistic"], rtol=1e-9)


def test_fit_from_a_parquet_file_matches_fit_from_the_frame_when_every_row_is_sampled(tmp_path):
    reference = frame(30_000, seed=1)  # below the 50 000 rows sampled to place the grids
    path = tmp_path / "reference.parquet"
    reference.to_parquet(path, row_group_size=4_000)
    from_file, from_frame = fitted(path), fitted(reference)
    assert from_file.reference_id_ == from_frame.reference_id_
    assert_same_profile(from_file.reference_, from_frame.reference_)


def test_profiles_of_different_references_do_not_merge():
    first, second = fitted(frame(5_000, seed=1)), fitted(frame(5_000, seed=2))
    with pytest.raises(DataError, match="re-profile"):
        first.profile(frame(100, seed=3)).merge(second.profile(frame(100, seed=3)))
    with pytest.raises(DataError, match="profile the data with this detector"):
        first.compare(second.profile(frame(100, seed=3)))


def test_saved_profiles_and_detectors_round_trip(tmp_path):
    detector = fitted(frame(10_000, seed=1), learned_thresholds={"chunks": 5})
    profile = detector.profile(frame(3_000, seed=2, shift=1.0))
    profile.save(tmp_path / "day.npz")
    assert_same_profile(profile, Profile.load(tmp_path / "day.npz"))
    detector.save(tmp_path / "reference.npz")
    loaded = DriftDetector.load(tmp_path / "reference.npz")
    assert loaded.compare(profile).to_dict() == detector.compare(profile).to_dict()
    assert loaded.thresholds_ == detector.thresholds_
    with pytest.raises(DataError, match="no fitted reference"):
        DriftDetector.load(tmp_path / "missing.npz")


def test_psi_bins_are_the_references_deciles():
    detector = fitted(frame(50_000, seed=1))
    reference = detector.reference_.columns["y"]
    coarse = np.add.reduceat(reference.counts[:-1], detector.coarse_starts_["y"])
    assert coarse.size == 10
    np.testing.assert_allclose(coarse / reference.n_values, 0.1, atol=0.002)


def test_a_heavy_tailed_column_gets_a_finer_piecewise_grid():
    rng = np.random.default_rng(5)
    pareto = pd.DataFrame({"v": rng.pareto(0.8, 100_000) + 1})
    detector = DriftDetector(DriftSpec(columns={"v": NUM})).fit(pareto)
    assert detector.grids_["v"].knots.size > 2  # not one uniform run
    current = rng.pareto(0.8, 20_000) + 1
    report = detector.compare(pd.DataFrame({"v": current}))
    exact = stats.ks_2samp(pareto["v"], current).statistic
    assert statistic(report, "v", "ks") == pytest.approx(exact, abs=0.005)
    assert report.verdict is DriftVerdict.OK


def test_large_values_with_a_small_spread_keep_their_standard_deviation():
    rng = np.random.default_rng(12)
    reference = pd.DataFrame({"v": 1e6 + rng.normal(scale=0.01, size=20_000)})
    current = pd.DataFrame({"v": 1e6 + rng.normal(loc=0.005, scale=0.01, size=20_000)})
    spec = DriftSpec(columns={"v": NUM})
    report = DriftDetector(spec).fit(reference).compare(current)
    exact = stats.wasserstein_distance(reference["v"], current["v"]) / reference["v"].std()
    assert statistic(report, "v", "wasserstein") == pytest.approx(exact, abs=0.005)
    assert report.drifted_columns == ["v"]  # a 0.5-sigma shift, not hidden by lost precision


def test_infinite_values_count_as_missing_and_keep_every_statistic_finite():
    rng = np.random.default_rng(13)
    values = 1e6 + rng.normal(size=10_000)
    values[:100] = np.inf
    values[100:150] = -np.inf
    detector = DriftDetector(DriftSpec(columns={"v": NUM})).fit(pd.DataFrame({"v": values}))
    reference = detector.reference_.columns["v"]
    assert np.all(np.isfinite(detector.grids_["v"].edges))
    assert reference.n_null == 150
    assert reference.mean == pytest.approx(values[150:].mean())
    assert reference.std == pytest.approx(values[150:].std(), rel=1e-6)
    current = 1e6 + rng.normal(size=10_000)
    current[:5] = np.inf
    report = detector.compare(pd.DataFrame({"v": current}))
    assert all(np.isfinite(m.statistic) for m in report.columns[0].methods)
    assert report.verdict is DriftVerdict.OK


def test_arrow_booleans_with_nulls_and_large_integer_codes_are_read_as_they_are():
    table = pa.table(
        {
            "flag": pa.array([True, False, None] * 500),
            "code": pa.array([2**53, 2**53 + 1, 7] * 500, type=pa.int64()),
        }
    )
    spec = DriftSpec(columns={"flag": NUM, "code": CAT}, policy=DriftPolicy(min_rows=10))
    detector = DriftDetector(spec).fit(table)
    assert set(detector.codebooks_["code"].top) == {str(2**53), str(2**53 + 1), "7"}
    assert detector.compare(table).verdict is DriftVerdict.OK


def test_a_problem_on_one_day_of_a_window_makes_the_column_invalid():
    detector = fitted(frame(10_000, seed=1))
    good = detector.profile(frame(2_000, seed=2))
    broken = detector.profile(frame(2_000, seed=3).drop(columns=["y"]))
    report = detector.compare(good.merge(broken))
    y = next(c for c in report.columns if c.column == "y")
    assert y.verdict is DriftVerdict.INVALID and "missing" in y.worst.reason


def test_unreadable_profile_files_are_data_errors(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="unreadable"):
        Profile.load(path)


def test_segments_use_a_sixteen_times_coarser_grid_and_stay_close_to_exact():
    detector = fitted(frame(60_000, seed=1))
    current = frame(30_000, seed=6, shift=0.3)
    profile = detector.profile(current)
    overall, eu = profile.columns["x"], profile.segments["region=eu"]["x"]
    assert overall.counts.size - 3 == 16 * (eu.counts.size - 3)
    report = detector.compare(profile)
    segment = next(s for s in report.segments if s.segment == "region=eu")
    ks = next(m for c in segment.columns if c.column == "x" for m in c.methods if m.method == "ks")
    reference = frame(60_000, seed=1)
    exact = stats.ks_2samp(
        reference.loc[reference["region"] == "eu", "x"].dropna(),
        current.loc[current["region"] == "eu", "x"].dropna(),
    ).statistic
    assert ks.statistic == pytest.approx(exact, abs=0.01)
