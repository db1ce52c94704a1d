"""Drift between a reference and current data, computed from mergeable profiles.

Configuration (`DriftSpec`), calculation (the method registry, over `Profile`s) and judgement
(thresholds -> `DriftVerdict`) are kept apart, as in Evidently. The default methods are effect
sizes, so a verdict does not flip just because a window is larger; p-value methods are opt-in
and corrected across columns and segments with Benjamini-Hochberg.

    detector = DriftDetector(spec).fit(reference)     # DataFrame, Arrow table or Parquet path
    daily = detector.profile(partition)               # small, mergeable
    report = detector.compare(daily.merge(yesterday)) # or a DataFrame, a table, a path
    report.drifted_columns                            # ['income', 'device_os']
"""

import hashlib
import io
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from scipy.spatial.distance import jensenshannon

from orchestrator.core.errors import DataError, NotFittedError, UnknownMethodError
from orchestrator.core.profile import (
    FINE_BINS,
    OVERALL,
    SEGMENT_FOLD,
    Batch,
    Codebook,
    ColumnProfile,
    NumericGrid,
    Profile,
    Source,
    arrays_from_bytes,
    arrays_to_bytes,
    categorical_profile,
    empty_profile,
    iter_batches,
    source_columns,
    source_rows,
    write_atomically,
)
from orchestrator.core.spec import DriftPolicy, FeatureKind, LearnedThresholds, MonitoredModelSpec

if TYPE_CHECKING:  # multivariate imports this module's DriftVerdict; typing only here
    from orchestrator.core.multivariate import MultivariateResult

# Empty bins would make PSI infinite; this floor is the usual smoothing (Evidently uses 1e-4 too).
_PSI_FLOOR = 1e-4
# Rows sampled from the reference to place the numerical grids: the 0.05% tails are then
# estimated from 25 values each, and a bin holding 0.2% of the mass from 100.
_SAMPLE_ROWS = 50_000
_BLOCK_ROWS = 1 << 20


class DriftVerdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    DRIFT = "drift"
    INSUFFICIENT_DATA = "insufficient_data"
    INVALID = "invalid"


# Order of severity for "the worst of": anything that cannot be judged ranks above a warning.
_SEVERITY = {
    DriftVerdict.OK: 0,
    DriftVerdict.WARN: 1,
    DriftVerdict.INSUFFICIENT_DATA: 2,
    DriftVerdict.INVALID: 3,
    DriftVerdict.DRIFT: 4,
}


def worst_verdict(verdicts: Iterable[DriftVerdict]) -> DriftVerdict:
    return max(verdicts, key=_SEVERITY.__getitem__, default=DriftVerdict.OK)


class DriftSpec(BaseModel):
    """Which columns to watch, their kinds, the segment columns, and the judging policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, FeatureKind]
    segments: list[str] = []
    policy: DriftPolicy = Field(default_factory=DriftPolicy)

    @classmethod
    def for_model(cls, spec: MonitoredModelSpec) -> "DriftSpec":
        return cls(
            columns={f.name: f.kind for f in spec.features},
            segments=spec.segments,
            policy=spec.drift,
        )

    @property
    def segment_definitions(self) -> list[tuple[str, ...]]:
        return [(s,) for s in self.segments] + [tuple(c) for c in self.policy.segment_crosses]


@dataclass(frozen=True)
class AppliedThreshold:
    """The levels one verdict applied. `above`: an effect size at or above a level breaches
    it; `below`: a (corrected) p-value at or below it does. `learned` says where they came
    from."""

    warn: float
    error: float
    direction: Literal["above", "below"] = "above"
    learned: bool = False

    def breached(self, statistic: float, level: float) -> bool:
        return statistic >= level if self.direction == "above" else statistic <= level


@dataclass(frozen=True)
class MethodResult:
    """One statistic on one column, with the threshold actually applied and why it judged so."""

    column: str
    method: str
    statistic: float | None
    threshold: AppliedThreshold
    verdict: DriftVerdict
    reason: str


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: FeatureKind
    n_reference: int
    n_current: int
    methods: tuple[MethodResult, ...]

    @property
    def verdict(self) -> DriftVerdict:
        return worst_verdict(m.verdict for m in self.methods)

    @property
    def worst(self) -> MethodResult:
        """The method that decided the verdict; among equals, the furthest past its error level."""
        return max(self.methods, key=lambda m: (_SEVERITY[m.verdict], _error_ratio(m)))


def _error_ratio(result: MethodResult) -> float:
    statistic, level = result.statistic, result.threshold.error
    if statistic is None or level == 0:
        return 0.0
    if result.threshold.direction == "below":
        return level / max(statistic, 1e-300)
    return statistic / level


def _rank_key(column: ColumnDrift) -> tuple[int, float]:
    return _SEVERITY[column.verdict], _error_ratio(column.worst)


@dataclass(frozen=True)
class SegmentDrift:
    """The columns of one segment (such as region=eu) against the same segment of the
    reference. Too few rows make it insufficient_data, which is reported but never blocks."""

    segment: str
    n_reference: int
    n_current: int
    columns: tuple[ColumnDrift, ...]

    @property
    def verdict(self) -> DriftVerdict:
        return worst_verdict(c.verdict for c in self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.verdict is DriftVerdict.DRIFT]


@dataclass(frozen=True)
class DriftReport:
    columns: tuple[ColumnDrift, ...]
    n_reference: int
    n_current: int
    segments: tuple[SegmentDrift, ...] = ()
    multivariate: "MultivariateResult | None" = None  # when the policy enables it

    @property
    def verdict(self) -> DriftVerdict:
        """Worst of the columns, the judged segments and the multivariate result."""
        verdicts = [c.verdict for c in self.columns]
        verdicts += [
            s.verdict for s in self.segments if s.verdict is not DriftVerdict.INSUFFICIENT_DATA
        ]
        if self.multivariate is not None and (
            self.multivariate.verdict is not DriftVerdict.INSUFFICIENT_DATA
        ):
            verdicts.append(self.multivariate.verdict)
        return worst_verdict(verdicts)

    def columns_with(self, verdict: DriftVerdict) -> list[str]:
        return [c.column for c in self.columns if c.verdict is verdict]

    @property
    def drifted_columns(self) -> list[str]:
        return self.columns_with(DriftVerdict.DRIFT)

    @property
    def drifted_segments(self) -> list[str]:
        return [s.segment for s in self.ranked_segments() if s.verdict is DriftVerdict.DRIFT]

    @property
    def multivariate_drift(self) -> bool:
        return self.multivariate is not None and self.multivariate.verdict is DriftVerdict.DRIFT

    def ranked(self) -> list[ColumnDrift]:
        """Columns worst first: by verdict severity, then by how far past the error level."""
        return sorted(self.columns, key=_rank_key, reverse=True)

    def ranked_segments(self) -> list[SegmentDrift]:
        """Segments worst first; those with too few rows last, as they decide nothing."""
        return sorted(
            self.segments,
            key=lambda s: (
                s.verdict is not DriftVerdict.INSUFFICIENT_DATA,
                max((_rank_key(c) for c in s.columns), default=(0, 0.0)),
            ),
            reverse=True,
        )

    def to_records(self) -> list[dict]:
        """Every method on every column, overall first, then segments, each worst first."""
        units = [(OVERALL, self.ranked())] + [
            (s.segment, sorted(s.columns, key=_rank_key, reverse=True))
            for s in self.ranked_segments()
        ]
        return [
            {
                "segment": segment or "(all)",
                "column": m.column,
                "method": m.method,
                "statistic": m.statistic,
                "warn": m.threshold.warn,
                "error": m.threshold.error,
                "verdict": m.verdict.value,
                "reason": m.reason,
            }
            for segment, columns in units
            for c in columns
            for m in c.methods
        ]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame.from_records(self.to_records())

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict.value,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "drifted_columns": self.drifted_columns,
            "drifted_segments": self.drifted_segments,
            "results": self.to_records(),
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
        }


# --- the method registry -------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnContext:
    """What the methods need besides the two profiles: the bins the reference defined."""

    grid: NumericGrid | None
    codebook: Codebook | None
    coarse_starts: np.ndarray | None  # numerical: first fine bin of each coarse quantile bin


Statistic = tuple[float, str]  # value, and a note for the reason ("" when none)


@dataclass(frozen=True)
class DriftMethod:
    name: str
    kinds: frozenset[FeatureKind]
    compute: Callable[[ColumnProfile, ColumnProfile, ColumnContext], Statistic]
    needs_values: bool = True  # False: judged on row counts (null rate), not on non-null values
    p_value: bool = False  # True: the statistic is a p-value, judged against alpha after BH


def _fractions(profile: ColumnProfile, ctx: ColumnContext) -> np.ndarray:
    """Fractions of rows over the coarse bins (numerical) or categories, plus the null bin."""
    counts = profile.counts
    if ctx.coarse_starts is not None:
        counts = np.append(np.add.reduceat(counts[:-1], ctx.coarse_starts), counts[-1])
    return counts / max(profile.n_rows, 1)


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins used by either side, empty bins floored."""
    used = (expected > 0) | (actual > 0)
    e = np.clip(expected[used], _PSI_FLOOR, None)
    a = np.clip(actual[used], _PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _psi(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    return population_stability_index(_fractions(ref, ctx), _fractions(cur, ctx)), ""


def _jensen_shannon(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    return float(jensenshannon(_fractions(ref, ctx), _fractions(cur, ctx), base=2)), ""


def _cdfs(ref: ColumnProfile, cur: ColumnProfile) -> tuple[np.ndarray, np.ndarray]:
    """Each side's non-null mass per fine bin (underflow, grid, overflow)."""
    return ref.counts[:-1] / ref.n_values, cur.counts[:-1] / cur.n_values


def _ks(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    """The largest CDF gap, read at the fine bin edges.

    Inside a bin each CDF only rises, so the gap can exceed its value at the edges by at most
    the smaller of the two masses in that bin: that is the stated error bound.
    """
    ref_mass, cur_mass = _cdfs(ref, cur)
    gap = np.abs(np.cumsum(ref_mass) - np.cumsum(cur_mass))
    bound = float(np.max(np.minimum(ref_mass, cur_mass)))
    return float(gap.max()), f"binning error at most {bound:.2g}"


def _bin_integrals(profile: ColumnProfile, edges: np.ndarray) -> np.ndarray:
    """The integral of the CDF over each fine bin, exact from the bin's count and sum.

    Over bin [a, b) the CDF integrates to F(a)(b - a) + sum over its values of (b - x), / n;
    below the grid to sum(lo - x) / n; above it, (F - 1) integrates to -sum(x - hi) / n.
    """
    n = profile.n_values
    counts, sums = profile.counts[:-1], profile.sums[:-1]
    before = np.cumsum(counts) - counts  # values in earlier bins
    grid = (before[1:-1] * np.diff(edges) + counts[1:-1] * edges[1:] - sums[1:-1]) / n
    below, above = _tail_integrals(profile, edges)
    return np.concatenate(([below], grid, [-above]))


def _wasserstein(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    """Earth mover's distance divided by the reference's standard deviation.

    W1 is the integral of |F_ref - F_cur|; per fine bin the integral of F_ref - F_cur is exact
    (see `_bin_integrals`), so only bins where the two CDFs may cross lose anything: at most
    `wasserstein_error_bound`, which the reason states.
    """
    edges = ctx.grid.edges
    gap = np.abs(_bin_integrals(ref, edges) - _bin_integrals(cur, edges)).sum()
    scale = ref.std if ref.std > 0 else 1.0
    bound = wasserstein_error_bound(ref, cur, edges) / scale
    return float(gap / scale), f"binning error at most {bound:.2g}"


def wasserstein_error_bound(ref: ColumnProfile, cur: ColumnProfile, edges: np.ndarray) -> float:
    """How much the binned W1 can fall short of the exact one (before scaling).

    Inside a grid bin F_ref - F_cur starts at its value at the left edge and moves by at most
    the two masses in the bin; only if that range straddles zero can the sign change, losing
    at most twice the bin width times those masses. In a tail bin the loss is at most twice
    the smaller of the two tail integrals.
    """
    ref_mass, cur_mass = _cdfs(ref, cur)
    start = np.cumsum(ref_mass) - ref_mass - (np.cumsum(cur_mass) - cur_mass)
    grid = slice(1, -1)
    straddles = (start[grid] - cur_mass[grid] < 0) & (start[grid] + ref_mass[grid] > 0)
    widths = np.diff(edges)
    inner = 2 * np.sum((widths * (ref_mass[grid] + cur_mass[grid]))[straddles])
    ref_tails, cur_tails = _tail_integrals(ref, edges), _tail_integrals(cur, edges)
    return float(inner + 2 * np.minimum(ref_tails, cur_tails).sum())


def _tail_integrals(profile: ColumnProfile, edges: np.ndarray) -> np.ndarray:
    """The integral of F below the grid and of 1 - F above it."""
    n, counts, sums = profile.n_values, profile.counts, profile.sums
    below = (counts[0] * edges[0] - sums[0]) / n
    above = (sums[-2] - counts[-2] * edges[-1]) / n
    return np.array([below, above])


def _known_counts(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext):
    """Counts over the reference's categories (named ones and "other"), which both sides share."""
    known = slice(0, ctx.codebook.unseen)
    return ref.counts[known].astype(float), cur.counts[known].astype(float)


def _chi_square(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    """Cohen's w, the effect size of the chi-square goodness-of-fit test of current against
    reference proportions: sqrt(sum((p_cur - p_ref)^2 / p_ref)) over the reference's categories.

    Unlike the chi-square statistic or Cramér's V it does not grow with sample size. Sampling
    noise alone gives w^2 about (k - 1)(1/n_cur + 1/n_ref) for k categories, enough to cross a
    0.1 warn level on a day of a few thousand rows with many categories; that expectation is
    subtracted (as in Bergsma's bias-corrected Cramér's V), so small windows do not cry wolf.
    Categories the reference never saw are left to `unseen_share`.
    """
    ref_counts, cur_counts = _known_counts(ref, cur, ctx)
    used = ref_counts > 0
    n_ref, n_cur = ref_counts[used].sum(), cur_counts[used].sum()
    if n_cur == 0:
        return 1.0, "every current value is new"
    p_ref, p_cur = ref_counts[used] / n_ref, cur_counts[used] / n_cur
    w_squared = np.sum((p_cur - p_ref) ** 2 / p_ref)
    noise = (used.sum() - 1) * (1 / n_cur + 1 / n_ref)
    return float(math.sqrt(max(w_squared - noise, 0.0))), ""


def _unseen_share(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    share = cur.counts[ctx.codebook.unseen] / max(cur.n_values, 1)
    examples = ", ".join(list(cur.unseen)[:3])
    return float(share), f"e.g. {examples}" if examples else ""


def _null_rate(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    return abs(cur.null_rate - ref.null_rate), ""


def _ks_test(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    """p-value of the two-sample KS test (asymptotic, as scipy's ks_2samp for large samples)."""
    statistic, _ = _ks(ref, cur, ctx)
    n, m = ref.n_values, cur.n_values
    p = stats.distributions.kstwo.sf(statistic, np.round(n * m / (n + m)))
    return float(np.clip(p, 0, 1)), f"D={statistic:.4g}"


def _chi_square_test(ref: ColumnProfile, cur: ColumnProfile, ctx: ColumnContext) -> Statistic:
    """p-value of the chi-square test of homogeneity over every category, unseen ones too."""
    table = np.vstack([ref.counts[:-1], cur.counts[:-1]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0, "a single category on both sides"
    result = stats.chi2_contingency(table, correction=False)
    return float(result.pvalue), f"chi2={result.statistic:.4g}"


_BOTH = frozenset(FeatureKind)
_NUM, _CAT = frozenset({FeatureKind.NUMERICAL}), frozenset({FeatureKind.CATEGORICAL})
METHODS: dict[str, DriftMethod] = {
    m.name: m
    for m in (
        DriftMethod("psi", _NUM, _psi),
        DriftMethod("jensen_shannon", _BOTH, _jensen_shannon),
        DriftMethod("wasserstein", _NUM, _wasserstein),
        DriftMethod("ks", _NUM, _ks),
        DriftMethod("chi_square", _CAT, _chi_square),
        DriftMethod("unseen_share", _CAT, _unseen_share),
        DriftMethod("null_rate", _BOTH, _null_rate, needs_values=False),
        DriftMethod("ks_test", _NUM, _ks_test, p_value=True),
        DriftMethod("chi_square_test", _CAT, _chi_square_test, p_value=True),
    )
}


def get_method(name: str, kind: FeatureKind) -> DriftMethod:
    method = METHODS.get(name)
    if method is None:
        raise UnknownMethodError(f"unknown drift method {name!r}; valid methods: {sorted(METHODS)}")
    if kind not in method.kinds:
        valid = sorted(n for n, m in METHODS.items() if kind in m.kinds)
        raise UnknownMethodError(
            f"drift method {name!r} does not apply to {kind.value} columns; valid: {valid}"
        )
    return method


# --- the detector --------------------------------------------------------------------------


class DriftDetector:
    """Learns the reference (bins, categories, thresholds), then profiles and judges data."""

    def __init__(self, spec: DriftSpec):
        self.spec = spec
        policy = spec.policy
        self._methods = {
            column: [
                get_method(name, kind)
                for name in (
                    policy.numerical_methods
                    if kind is FeatureKind.NUMERICAL
                    else policy.categorical_methods
                )
            ]
            for column, kind in spec.columns.items()
        }
        self._categorical = [c for c, k in spec.columns.items() if k is FeatureKind.CATEGORICAL]
        self._numerical = [c for c, k in spec.columns.items() if k is FeatureKind.NUMERICAL]
        self._segment_columns = sorted({c for d in spec.segment_definitions for c in d})

    # -- fit --

    def fit(self, reference: Source) -> "DriftDetector":
        """Learn from the reference in two passes over it (Parquet files are streamed):
        category counts and a row sample first, then the profile, chunk by chunk."""
        n_rows = source_rows(reference)
        columns = sorted({*self.spec.columns, *self._segment_columns})
        passes = _Passes(reference, columns, self._categorical + self._segment_columns)
        sample, numbers, category_counts = self._survey(passes, n_rows)
        self.grids_ = {c: NumericGrid.from_sample(numbers[c]) for c in self._numerical}
        self.codebooks_ = {
            c: Codebook.from_counts(category_counts[c], self.spec.policy.top_categories)
            for c in self._categorical
        }
        self.segment_codebooks_ = {
            c: Codebook.from_counts(category_counts[c], self.spec.policy.max_segments)
            for c in self._segment_columns
        }
        self.reference_id_ = self._fingerprint()
        learned = self.spec.policy.learned_thresholds
        chunks = self._profile_chunks(passes, n_rows, learned.chunks if learned else 1)
        self.reference_ = Profile.merge_all(chunks)
        self.coarse_starts_ = {
            c: _coarse_starts(self.reference_.columns[c], self.spec.policy.bins)
            for c in self._numerical
        }
        self.thresholds_ = self._thresholds(chunks)
        self.n_reference_ = n_rows
        rows = min(len(sample), self.spec.policy.multivariate.sample_rows)
        self.sample_ = sample.sample(n=rows, random_state=0, ignore_index=True)
        return self

    def _survey(self, passes: "_Passes", n_rows: int) -> tuple[pd.DataFrame, dict, dict]:
        """A bounded row sample (and its numerical columns as floats), and exact category
        counts. A numerical column that is not numbers fails here, naming it."""
        rate = min(1.0, _SAMPLE_ROWS / max(n_rows, 1))
        rng = np.random.default_rng(0)
        rows, numbers = [], {c: [] for c in self._numerical}
        counts = {c: {} for c in {*self._categorical, *self._segment_columns}}
        for batch in passes():
            # With replacement and deduplicated: a permutation of 10M rows costs more than the
            # whole profile, and a few repeats do not matter for placing a grid.
            take = (
                np.arange(len(batch))
                if rate == 1.0
                else np.unique(rng.integers(0, len(batch), round(len(batch) * rate)))
            )
            rows.append(batch.rows(take, list(self.spec.columns)))
            for column in self._numerical:
                try:
                    numbers[column].append(batch.numeric(column)[take])
                except DataError as e:
                    raise DataError(f"reference data: {e}") from e
            for column, column_counts in counts.items():
                indices, labels = batch.categorical(column)
                per_label = np.bincount(indices + 1, minlength=len(labels) + 1)[1:]
                for i in np.flatnonzero(per_label):
                    column_counts[labels[i]] = column_counts.get(labels[i], 0) + int(per_label[i])
        numbers = {c: np.concatenate(parts) for c, parts in numbers.items()}
        return pd.concat(rows, ignore_index=True), numbers, counts

    def _fingerprint(self) -> str:
        """Names the bins: profiles merge and compare only when every bin means the same."""
        shape = f"{FINE_BINS}|{SEGMENT_FOLD}|{self.spec.segment_definitions}"
        digest = hashlib.sha256(shape.encode())
        for column in sorted(self.grids_):
            digest.update(f"grid|{column}|".encode() + self.grids_[column].edges.tobytes())
        for kind, books in (("codes", self.codebooks_), ("segments", self.segment_codebooks_)):
            for column, book in sorted(books.items()):
                names = "\x1f".join(book.top) + "\x1e" + "\x1f".join(sorted(book.others))
                digest.update(f"{kind}|{column}|{names}".encode())
        return digest.hexdigest()[:16]

    def _profile_chunks(self, passes: "_Passes", n_rows: int, chunks: int) -> list[Profile]:
        """Profiles of `chunks` contiguous row ranges; merged, they are the reference profile."""
        bounds = np.linspace(0, n_rows, min(chunks, max(n_rows, 1)) + 1).astype(int)
        parts: list[list[Profile]] = [[] for _ in range(bounds.size - 1)]
        offset = 0
        for batch in passes():
            arrays = self._arrays(batch)
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
                start, stop = max(lo, offset) - offset, min(hi, offset + len(batch)) - offset
                if start < stop:
                    parts[i].append(self._profile_arrays(arrays, slice(start, stop)))
            offset += len(batch)
        return [Profile.merge_all(p) if p else self._empty_profile() for p in parts]

    def _thresholds(self, chunks: list[Profile]) -> dict[str, dict[str, AppliedThreshold]]:
        """Per column and method: fixed levels, or levels learned from the reference chunks."""
        policy, learned = self.spec.policy, self.spec.policy.learned_thresholds
        levels = {
            column: {m.name: _fixed_threshold(m, policy) for m in self._methods[column]}
            for column in self.spec.columns
        }
        if learned is None:
            return levels
        for column in self.spec.columns:
            for method in self._methods[column]:
                if method.name in learned.methods:
                    statistics = self._chunk_statistics(column, method, chunks)
                    levels[column][method.name] = _learned_threshold(
                        statistics, learned, levels[column][method.name]
                    )
        return levels

    def _chunk_statistics(self, column: str, method: DriftMethod, chunks: list[Profile]):
        """The method's statistic of each chunk against the rest of the reference (so a chunk
        is never compared with itself); chunks below `min_rows` values are left out."""
        ctx, total = self._context(column), self.reference_.columns[column]
        parts = [c.columns[column] for c in chunks]
        return [
            method.compute(total.without(part), part, ctx)[0]
            for part in parts
            if part.n_values >= self.spec.policy.min_rows and total.n_values > part.n_values
        ]

    # -- profile --

    def profile(self, data: Source) -> Profile:
        """The mergeable profile of `data` on this reference's bins."""
        self._require_fit()
        present = self._present_columns(data)
        profiles = [
            self._profile_arrays(self._arrays(batch, present), slice(None))
            for batch in iter_batches(data, present, [c for c in self._categorical if c in present])
        ]
        problems = self._column_problems(data, present)
        merged = Profile.merge_all(profiles) if profiles else self._empty_profile()
        return replace(merged, problems={**merged.problems, **problems})

    def _present_columns(self, data: Source) -> list[str]:
        available = set(source_columns(data))
        return [c for c in sorted({*self.spec.columns, *self._segment_columns}) if c in available]

    def _column_problems(self, data: Source, present: list[str]) -> dict[str, str]:
        return {
            column: f"column {column!r} is missing from the current data"
            for column in self.spec.columns
            if column not in present
        }

    def _arrays(self, batch: Batch, columns: Iterable[str] | None = None) -> "_Columns":
        """Each column once as numpy: float values, or (indices, labels) for categories."""
        values, problems = {}, {}
        for column in columns if columns is not None else batch.column_names:
            if column in self.spec.columns and self.spec.columns[column] is FeatureKind.NUMERICAL:
                try:
                    values[column] = batch.numeric(column)
                except DataError as e:
                    problems[column] = str(e)
            elif column in self.spec.columns or column in self.segment_codebooks_:
                values[column] = batch.categorical(column)
        return _Columns(values, problems, len(batch))

    def _profile_arrays(self, arrays: "_Columns", rows: slice) -> Profile:
        """Profiles blocks of `_BLOCK_ROWS` rows and merges them: the temporaries of a block
        stay in cache and are reused, where whole-column ones at 10M rows would page-fault."""
        start, stop, _ = rows.indices(arrays.n_rows)
        bounds = [*range(start, stop, _BLOCK_ROWS), stop]
        return (
            Profile.merge_all(
                self._profile_block(arrays, slice(a, b))
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            )
            if stop > start
            else self._profile_block(arrays, rows)
        )

    def _profile_block(self, arrays: "_Columns", rows: slice) -> Profile:
        columns = self._column_profiles(arrays, rows, None)
        segments, segment_rows = {}, {}
        for definition in self.spec.segment_definitions:
            if not all(c in arrays.values for c in definition):
                continue
            for key, members in self._segment_members(arrays, rows, definition):
                segments[key] = self._column_profiles(arrays, rows, members)
                segment_rows[key] = int(members.size)
        return Profile(
            self.reference_id_,
            arrays.rows_in(rows),
            columns,
            segments,
            segment_rows,
            arrays.problems,
        )

    def _column_profiles(
        self, arrays: "_Columns", rows: slice, members: np.ndarray | None
    ) -> dict[str, ColumnProfile]:
        """Each column's profile over `rows` (or those of them in `members`), columns in
        parallel: the numerical kernel releases the GIL."""

        def one(column: str) -> ColumnProfile:
            if self.spec.columns[column] is FeatureKind.NUMERICAL:
                values = arrays.values[column][rows]
                if members is None:
                    return self.grids_[column].profile(values)
                return self.grids_[column].folded(SEGMENT_FOLD).profile(values[members])
            indices, labels = arrays.values[column]
            indices = indices[rows] if members is None else indices[rows][members]
            return categorical_profile(indices, labels, self.codebooks_[column])

        columns = [c for c in self.spec.columns if c in arrays.values]
        return dict(zip(columns, _workers().map(one, columns), strict=True))

    def _segment_members(self, arrays: "_Columns", rows: slice, definition: tuple[str, ...]):
        """(segment key, row positions) for each value combination the reference tracks."""
        codes = np.zeros(arrays.rows_in(rows), np.intp)
        books = [self.segment_codebooks_[column] for column in definition]
        for column, book in zip(definition, books, strict=True):
            indices, labels = arrays.values[column]
            lookup = np.append(book.codes_for(labels), book.null)  # index -1 is null
            part = lookup[indices[rows]]
            part[part >= len(book.top)] = -1  # untracked, unseen or null: in no segment
            codes = np.where((codes < 0) | (part < 0), -1, codes * len(book.top) + part)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.diff(sorted_codes, prepend=-2))
        for start, stop in zip(starts, np.append(starts[1:], sorted_codes.size), strict=True):
            if sorted_codes[start] >= 0:
                yield _segment_key(definition, books, int(sorted_codes[start])), order[start:stop]

    def _empty_profile(self) -> Profile:
        columns = {
            c: empty_profile(self.grids_[c].n_bins, float(self.grids_[c].edges[0]))
            if c in self.grids_
            else empty_profile(self.codebooks_[c].n_bins, None)
            for c in self.spec.columns
        }
        return Profile(self.reference_id_, 0, columns)

    # -- compare --

    def compare(
        self, current: "Source | Profile", sample: pd.DataFrame | None = None
    ) -> DriftReport:
        """Judge `current` against the reference. With a DataFrame (or `sample` rows alongside
        a profile) and the multivariate policy on, the domain classifier runs too."""
        self._require_fit()
        profile = current if isinstance(current, Profile) else self.profile(current)
        if profile.reference_id != self.reference_id_:
            raise DataError(
                f"the profile was binned on reference {profile.reference_id}, not on this "
                f"detector's {self.reference_id_}: profile the data with this detector"
            )
        if sample is None and isinstance(current, pd.DataFrame):
            sample = current
        overall = self._compare_unit(
            OVERALL, profile.columns, profile.problems, self.spec.policy.min_rows
        )
        keys = [key for key in sorted(self.reference_.segments) if key in profile.segments]
        overall, segments = self._correct_p_values(overall, self._compare_segments(profile, keys))
        return DriftReport(
            columns=overall,
            n_reference=self.n_reference_,
            n_current=profile.n_rows,
            segments=tuple(
                SegmentDrift(
                    key,
                    self.reference_.segment_rows.get(key, 0),
                    profile.segment_rows.get(key, 0),
                    columns,
                )
                for key, columns in zip(keys, segments, strict=True)
            ),
            multivariate=self._multivariate(sample),
        )

    def _compare_segments(self, profile: Profile, keys: list[str]) -> list[tuple]:
        min_rows = self.spec.policy.min_segment_rows
        return [
            self._compare_unit(key, profile.segments[key], profile.problems, min_rows)
            for key in keys
        ]

    def _compare_unit(
        self,
        segment: str,
        current: Mapping[str, ColumnProfile],
        problems: Mapping[str, str],
        min_rows: int,
    ) -> tuple[ColumnDrift, ...]:
        reference = self.reference_.segments[segment] if segment else self.reference_.columns
        return tuple(
            self._compare_column(
                column, reference[column], current.get(column), problems, min_rows, bool(segment)
            )
            for column in self.spec.columns
        )

    def _compare_column(
        self,
        column: str,
        ref: ColumnProfile,
        cur: ColumnProfile | None,
        problems: Mapping[str, str],
        min_rows: int,
        segment: bool = False,
    ) -> ColumnDrift:
        kind, thresholds = self.spec.columns[column], self.thresholds_[column]
        methods = self._methods[column]
        if cur is None or column in problems:
            # A problem on any day of a merged window stays visible: the window is not judged.
            reason = problems.get(column, f"column {column!r} is missing from the current data")
            results = [
                MethodResult(column, m.name, None, thresholds[m.name], DriftVerdict.INVALID, reason)
                for m in methods
            ]
            return ColumnDrift(column, kind, ref.n_rows, cur.n_rows if cur else 0, tuple(results))
        ctx = self._context(column, segment)
        results = [self._judge(column, m, ref, cur, ctx, min_rows) for m in methods]
        return ColumnDrift(column, kind, ref.n_rows, cur.n_rows, tuple(results))

    def _context(self, column: str, segment: bool = False) -> ColumnContext:
        """The bins of a column; a segment's numerical bins are the folded grid's."""
        grid, starts = self.grids_.get(column), self.coarse_starts_.get(column)
        if segment and grid is not None:
            grid, starts = grid.folded(SEGMENT_FOLD), _folded_starts(starts, SEGMENT_FOLD)
        return ColumnContext(grid, self.codebooks_.get(column), starts)

    def _judge(
        self,
        column: str,
        method: DriftMethod,
        ref: ColumnProfile,
        cur: ColumnProfile,
        ctx: ColumnContext,
        min_rows: int,
    ) -> MethodResult:
        threshold = self.thresholds_[column][method.name]
        n_ref, n_cur = (
            (ref.n_values, cur.n_values) if method.needs_values else (ref.n_rows, cur.n_rows)
        )
        if min(n_ref, n_cur) < min_rows:
            rows_kind = "non-null values" if method.needs_values else "rows"
            reason = (
                f"{n_cur} current and {n_ref} reference {rows_kind}; at least {min_rows} needed"
            )
            return MethodResult(
                column, method.name, None, threshold, DriftVerdict.INSUFFICIENT_DATA, reason
            )
        statistic, note = method.compute(ref, cur, ctx)
        if not math.isfinite(statistic):
            # Kept as None: a NaN would also drop the row from the UI's table.
            reason = f"statistic is {statistic}"
            return MethodResult(column, method.name, None, threshold, DriftVerdict.INVALID, reason)
        # A p-value is judged after the Benjamini-Hochberg correction across the whole report.
        verdict, reason = (
            (DriftVerdict.OK, "") if method.p_value else judge_statistic(statistic, threshold)
        )
        reason = "; ".join(part for part in (reason, note) if part)
        return MethodResult(column, method.name, statistic, threshold, verdict, reason)

    def _correct_p_values(
        self, overall: tuple[ColumnDrift, ...], segments: list[tuple[ColumnDrift, ...]]
    ) -> tuple[tuple[ColumnDrift, ...], list[tuple[ColumnDrift, ...]]]:
        """Benjamini-Hochberg across every column and segment, per p-value method, then judge."""
        units = [overall, *segments]
        for name in {m.name for ms in self._methods.values() for m in ms if m.p_value}:
            found = [
                (u, c, m)
                for u, unit in enumerate(units)
                for c, column in enumerate(unit)
                for m, result in enumerate(column.methods)
                if result.method == name and result.statistic is not None
            ]
            if not found:
                continue
            raw = np.array([units[u][c].methods[m].statistic for u, c, m in found])
            adjusted = stats.false_discovery_control(raw, method="bh")
            for (u, c, m), p_raw, p in zip(found, raw, adjusted, strict=True):
                units[u] = _replace_method(
                    units[u], c, m, _judge_p_value(units[u][c].methods[m], p_raw, p, len(raw))
                )
        return units[0], units[1:]

    def _multivariate(self, sample: pd.DataFrame | None) -> "MultivariateResult | None":
        """The domain classifier's judgement; enabled but given no rows (a profile alone),
        it says so as insufficient data rather than vanishing from the report."""
        from orchestrator.core.multivariate import (
            METHOD,
            DomainClassifierDetector,
            MultivariateResult,
        )

        policy = self.spec.policy.multivariate
        if not policy.enabled:
            return None
        if sample is None:
            reason = "no current rows given (a profile alone cannot show the joint distribution)"
            return MultivariateResult(
                METHOD,
                None,
                policy.warn_band,
                policy.error_band,
                DriftVerdict.INSUFFICIENT_DATA,
                reason,
                self.n_reference_,
                0,
                (),
            )
        detector = DomainClassifierDetector(self.spec.columns, policy).fit(self.sample_)
        return detector.compare(sample)

    def _require_fit(self) -> None:
        if not hasattr(self, "reference_"):
            raise NotFittedError("DriftDetector used before fit(reference)")

    # -- persistence of the fitted state --

    def save(self, path: Path) -> None:
        """The fitted reference (bins, categories, thresholds, profile, row sample) as one
        file, so the reference profile is an artifact, not something re-fitted every check."""
        self._require_fit()
        books = {
            name: {c: [list(b.top), sorted(b.others)] for c, b in codebooks.items()}
            for name, codebooks in (
                ("codebooks", self.codebooks_),
                ("segment_codebooks", self.segment_codebooks_),
            )
        }
        header = {
            **books,
            "spec": self.spec.model_dump(mode="json"),
            "reference_id": self.reference_id_,
            "n_reference": self.n_reference_,
            "thresholds": {
                column: {m: [t.warn, t.error, t.direction, t.learned] for m, t in levels.items()}
                for column, levels in self.thresholds_.items()
            },
        }
        arrays = {f"edges|{c}": g.edges for c, g in self.grids_.items()}
        arrays |= {f"knots|{c}": g.knots for c, g in self.grids_.items()}
        arrays |= {f"coarse|{c}": s for c, s in self.coarse_starts_.items()}
        buffer = io.BytesIO()
        self.sample_.to_parquet(buffer, index=False)
        arrays["sample"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
        arrays["reference"] = np.frombuffer(self.reference_.to_bytes(), dtype=np.uint8)
        write_atomically(Path(path), arrays_to_bytes(header, arrays))

    @classmethod
    def load(cls, path: Path) -> "DriftDetector":
        path = Path(path)
        if not path.exists():
            raise DataError(f"no fitted reference at {path}")
        header, arrays = arrays_from_bytes(path.read_bytes())
        try:
            return cls(DriftSpec.model_validate(header["spec"]))._restore(header, arrays)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"unreadable fitted reference at {path}: {e!r}") from e

    def _restore(self, header: dict, arrays: dict) -> "DriftDetector":
        edges, knots = _by_column(arrays, "edges"), _by_column(arrays, "knots")
        self.grids_ = {c: NumericGrid(edges[c], knots[c]) for c in edges}
        self.coarse_starts_ = _by_column(arrays, "coarse")
        self.codebooks_ = _codebooks(header["codebooks"])
        self.segment_codebooks_ = _codebooks(header["segment_codebooks"])
        self.thresholds_ = {
            column: {m: AppliedThreshold(*levels) for m, levels in methods.items()}
            for column, methods in header["thresholds"].items()
        }
        self.reference_id_ = header["reference_id"]
        self.n_reference_ = header["n_reference"]
        self.sample_ = pd.read_parquet(io.BytesIO(arrays["sample"].tobytes()))
        self.reference_ = Profile.from_bytes(arrays["reference"].tobytes())
        return self


def _segment_key(definition: tuple[str, ...], books: list[Codebook], code: int) -> str:
    """ "region=eu&plan=pro" from a combined code (mixed radix, last column fastest)."""
    parts = []
    for column, book in zip(reversed(definition), reversed(books), strict=True):
        code, position = divmod(code, len(book.top))
        parts.append(f"{column}={book.top[position]}")
    return "&".join(reversed(parts))


def _by_column(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.split("|", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{prefix}|")}


def _codebooks(stored: Mapping[str, list]) -> dict[str, Codebook]:
    return {c: Codebook(tuple(top), frozenset(others)) for c, (top, others) in stored.items()}


_POOL: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _workers() -> ThreadPoolExecutor:
    """One thread pool per process: a forked child (Dagster's multiprocess executor) gets its
    own instead of inheriting a pool whose threads did not survive the fork."""
    with _POOL_LOCK:
        pid = os.getpid()
        if pid not in _POOL:
            _POOL.clear()
            _POOL[pid] = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="driftgate")
        return _POOL[pid]


class _Passes:
    """Repeatable passes over a source; an in-memory source is one batch, kept between passes
    so its columns are converted once."""

    def __init__(self, source: Source, columns: list[str], categorical: list[str]):
        self._source, self._columns, self._categorical = source, columns, categorical
        self._memory = (
            [next(iter_batches(source, columns, categorical))]
            if isinstance(source, pd.DataFrame | pa.Table)
            else None
        )

    def __call__(self) -> Iterable[Batch]:
        if self._memory is not None:
            return self._memory
        return iter_batches(self._source, self._columns, self._categorical)


@dataclass(frozen=True)
class _Columns:
    """One batch's watched columns as numpy, and the columns that could not be read."""

    values: dict[str, np.ndarray | tuple[np.ndarray, list[str]]]
    problems: dict[str, str]
    n_rows: int

    def rows_in(self, rows: slice) -> int:
        return len(range(*rows.indices(self.n_rows)))


def _folded_starts(starts: np.ndarray, fold: int) -> np.ndarray:
    """Coarse bin starts on the folded grid: fine bin f (1..B) lies in folded bin
    1 + (f - 1) // fold; underflow stays 0 and overflow follows the last folded bin."""
    folded = np.where(starts == 0, 0, 1 + (starts - 1) // fold)
    return np.unique(folded)


def _coarse_starts(reference: ColumnProfile, bins: int) -> np.ndarray:
    """The reference's quantile bins as runs of fine bins: each run starts after the fine bin
    where the cumulative share first reaches j / bins (as np.quantile cuts, on the fine grid)."""
    counts = reference.counts[:-1]
    if reference.n_values == 0:
        return np.array([0])
    cumulative = np.cumsum(counts) / reference.n_values
    cuts = np.searchsorted(cumulative, np.arange(1, bins) / bins - 1e-12) + 1
    return np.unique(np.concatenate(([0], cuts[cuts < counts.size])))


def _learned_threshold(
    statistics: list[float], learned: LearnedThresholds, fixed: AppliedThreshold
) -> AppliedThreshold:
    """mean + k * std of the chunk statistics. With fewer than three usable chunks, or when
    every chunk scored the same (std 0, so any change at all would block), the fixed levels
    stay: a level learned from no variation is no evidence of what is ordinary."""
    finite = [v for v in statistics if math.isfinite(v)]
    if len(finite) < 3 or np.std(finite) <= 1e-9 * max(1.0, abs(float(np.mean(finite)))):
        return fixed
    mean, std = float(np.mean(finite)), float(np.std(finite, ddof=1))
    return AppliedThreshold(mean + learned.warn_k * std, mean + learned.error_k * std, learned=True)


def _fixed_threshold(method: DriftMethod, policy: DriftPolicy) -> AppliedThreshold:
    if method.p_value:
        return AppliedThreshold(policy.alpha.warn, policy.alpha.error, direction="below")
    level = policy.thresholds[method.name]
    return AppliedThreshold(level.warn, level.error)


def judge_statistic(statistic: float, threshold: AppliedThreshold) -> tuple[DriftVerdict, str]:
    if not math.isfinite(statistic):
        return DriftVerdict.INVALID, f"statistic is {statistic}"
    source = "learned " if threshold.learned else ""
    if threshold.breached(statistic, threshold.error):
        return DriftVerdict.DRIFT, f"{statistic:.4g} >= {source}error level {threshold.error:.4g}"
    if threshold.breached(statistic, threshold.warn):
        return DriftVerdict.WARN, f"{statistic:.4g} >= {source}warn level {threshold.warn:.4g}"
    return DriftVerdict.OK, f"{statistic:.4g} < {source}warn level {threshold.warn:.4g}"


def _judge_p_value(result: MethodResult, p_raw: float, p: float, tests: int) -> MethodResult:
    level = result.threshold
    where = f"BH-adjusted p {p:.3g} (raw {p_raw:.3g}, {tests} tests; {result.reason})"
    if p <= level.error:
        verdict, reason = DriftVerdict.DRIFT, f"{where} <= alpha {level.error}"
    elif p <= level.warn:
        verdict, reason = DriftVerdict.WARN, f"{where} <= alpha {level.warn}"
    else:
        verdict, reason = DriftVerdict.OK, f"{where} > alpha {level.warn}"
    return replace(result, statistic=float(p), verdict=verdict, reason=reason)


def _replace_method(unit: tuple, c: int, m: int, result: MethodResult) -> tuple:
    column = unit[c]
    methods = column.methods[:m] + (result,) + column.methods[m + 1 :]
    return unit[:c] + (replace(column, methods=methods),) + unit[c + 1 :]


# --- persistence: m of the last n windows ------------------------------------------------------


def apply_persistence(history: Sequence[DriftReport], m: int, n: int) -> DriftReport:
    """The newest report, with error-level drift kept only for the columns (overall and per
    segment) that breached in at least `m` of the last `n` reports; others become warnings.

    `history` is oldest first and ends with the report being judged.
    """
    if not history:
        raise DataError("apply_persistence needs at least the current report")
    window, newest = list(history)[-n:], history[-1]
    if m <= 1:
        return newest
    return replace(
        newest,
        columns=_persist(OVERALL, newest.columns, window, m),
        segments=tuple(
            replace(s, columns=_persist(s.segment, s.columns, window, m)) for s in newest.segments
        ),
    )


def _persist(
    segment: str, columns: tuple[ColumnDrift, ...], window: list[DriftReport], m: int
) -> tuple[ColumnDrift, ...]:
    """Columns of one unit, drift downgraded to a warning where it breached too rarely."""
    kept = []
    for column in columns:
        breaches = sum(
            any(
                c.column == column.column and c.verdict is DriftVerdict.DRIFT
                for c in _unit_columns(report, segment)
            )
            for report in window
        )
        if column.verdict is not DriftVerdict.DRIFT or breaches >= m:
            kept.append(column)
            continue
        note = f"; breached in {breaches} of the last {len(window)} windows, {m} needed"
        methods = tuple(
            replace(r, verdict=DriftVerdict.WARN, reason=r.reason + note)
            if r.verdict is DriftVerdict.DRIFT
            else r
            for r in column.methods
        )
        kept.append(replace(column, methods=methods))
    return tuple(kept)


def _unit_columns(report: DriftReport, segment: str) -> tuple[ColumnDrift, ...]:
    if segment == OVERALL:
        return report.columns
    return next((s.columns for s in report.segments if s.segment == segment), ())


def summarize(report: DriftReport) -> Mapping[str, object]:
    """The few facts a timeline or a status line needs about a report."""
    worst = report.ranked()[0] if report.columns else None
    return {
        "verdict": report.verdict.value,
        "drifted_columns": report.drifted_columns,
        "drifted_segments": report.drifted_segments,
        "worst_column": worst.column if worst else None,
        "worst_method": worst.worst.method if worst else None,
        "worst_statistic": worst.worst.statistic if worst else None,
    }
