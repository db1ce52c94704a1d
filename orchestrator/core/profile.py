"""Mergeable profiles: the small summary of a partition that drift is computed from.

A profile holds, per watched column, counts over bins the reference defined:

- numerical: a fine grid of `FINE_BINS` equal-width bins between the reference's 0.05% and
  99.95% quantiles, plus underflow, overflow and null bins, with the sum of the values in each
  bin, and the column's sum of squares, minimum and maximum. The drift statistics' coarse
  quantile bins (PSI) are unions of fine bins, and KS and Wasserstein computed from the fine
  bins are within a stated bound of the exact values (see `orchestrator.core.drift`).
- categorical: counts for the reference's most frequent categories, "other" (reference
  categories beyond those), "unseen" (categories the reference never had) and null, with a few
  examples of the unseen ones.

Counts add, so a 7- or 30-day window is the merge of daily profiles, never a re-scan of rows.

Why by hand: sketches (t-digest, KLL in Apache DataSketches) merge only approximately, and the
profiles must merge exactly; binning against the reference's own grid is what makes that so.
"""

import io
import json
import math
import os
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.core.errors import DataError

FINE_BINS = 16384
# Segments bin numerical columns on every SEGMENT_FOLD-th edge of the fine grid (1024 bins):
# 16x less memory per segment and feature, at a resolution still far below any threshold.
SEGMENT_FOLD = 16
# The grid spans the reference's [0.05%, 99.95%] quantiles: outliers do not stretch it (a wide
# grid puts too much mass in one bin), and the tails keep exact counts and sums.
_GRID_TAIL = 0.0005
# A grid whose fullest bin holds more than this share of the reference sample is too coarse
# for the data (a heavy tail squeezes the mass into a few bins): piecewise grid instead.
_MAX_BIN_MASS = 0.002
_KNOTS = 64
_UNSEEN_EXAMPLES = 20
_MAX_OTHERS = 100_000
OVERALL = ""  # the segment key of the whole population


# --- grids and codebooks: what fit learns per column ---------------------------------------


def _spans(lo: float, hi: float) -> bool:
    """Whether [lo, hi) can hold FINE_BINS distinct, increasing bins with a finite scale."""
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        return False
    edges = np.linspace(lo, hi, FINE_BINS + 1)
    return math.isfinite(FINE_BINS / (hi - lo)) and bool(np.all(np.diff(edges) > 0))


@dataclass(frozen=True)
class NumericGrid:
    """Fine bins: index 0 underflow (< edges[0]), 1..B the grid, B+1 overflow, B+2 missing
    (null, NaN or infinite)."""

    # B + 1 increasing boundaries; bin i (1..B) holds [edges[i-1], edges[i]), up to the
    # rounding of a value that sits exactly on an edge (binned the same way every time).
    edges: np.ndarray
    knots: np.ndarray  # the boundaries between equal-width runs (2 knots: one uniform run)

    @classmethod
    def from_sample(cls, sample: np.ndarray) -> "NumericGrid":
        values = sample[np.isfinite(sample)]
        if values.size == 0:
            return cls.uniform(0.0, 1.0)
        lo, hi = (float(q) for q in np.quantile(values, [_GRID_TAIL, 1 - _GRID_TAIL]))
        if not _spans(lo, hi):
            lo, hi = float(values.min()), float(values.max())
        if not _spans(lo, hi):  # (almost) constant: one unit-wide grid around the value
            hi = lo + max(abs(lo), 1.0)
        grid = cls.uniform(lo, hi)
        if values.size * _MAX_BIN_MASS < 2 or grid.max_bin_mass(values) <= _MAX_BIN_MASS:
            return grid
        inner = np.unique(np.quantile(values, np.linspace(0, 1, _KNOTS + 1)))
        knots = np.concatenate(([lo], inner[(inner > lo) & (inner < hi)], [hi]))
        if knots.size < 3 or not all(
            _spans(a, b) for a, b in zip(knots[:-1], knots[1:], strict=True)
        ):
            return grid
        piecewise = cls.piecewise(knots)
        return piecewise if piecewise.max_bin_mass(values) < grid.max_bin_mass(values) else grid

    @classmethod
    def uniform(cls, lo: float, hi: float) -> "NumericGrid":
        return cls(np.linspace(lo, hi, FINE_BINS + 1), np.array([lo, hi]))

    @classmethod
    def piecewise(cls, knots: np.ndarray) -> "NumericGrid":
        per_run = FINE_BINS // (knots.size - 1)
        runs = [
            np.linspace(a, b, per_run + 1)[:-1] for a, b in zip(knots[:-1], knots[1:], strict=True)
        ]
        return cls(np.append(np.concatenate(runs), knots[-1]), knots)

    def folded(self, fold: int) -> "NumericGrid":
        """The same grid with every `fold`-th edge: each run of knots keeps whole bins."""
        return NumericGrid(self.edges[::fold], self.knots)

    @property
    def n_bins(self) -> int:
        return self.edges.size + 2  # underflow, grid, overflow, null

    def profile(self, values: np.ndarray) -> "ColumnProfile":
        """Counts, per-bin sums and moments of a float64 column (NaN for nulls), in one pass."""
        from orchestrator.core import kernels

        counts, sums = np.zeros(self.n_bins, np.int64), np.zeros(self.n_bins)
        values = np.ascontiguousarray(values, dtype=np.float64)
        if self.knots.size == 2:
            lo, hi = self.knots
            moments = kernels.profile_uniform(values, lo, hi, self.edges.size - 1, counts, sums)
        else:
            per_run = (self.edges.size - 1) // (self.knots.size - 1)
            moments = kernels.profile_piecewise(values, self.knots, per_run, counts, sums)
        origin = float(self.edges[0])
        if counts[-1] == counts.sum():
            return ColumnProfile(counts, sums, origin=origin)
        return ColumnProfile(counts, sums, *(float(m) for m in moments), origin=origin)

    def max_bin_mass(self, values: np.ndarray) -> float:
        return float(self.profile(values).counts.max() / max(values.size, 1))


@dataclass(frozen=True)
class Codebook:
    """Categories the reference had: its most frequent ones by name, the rest as "other"."""

    top: tuple[str, ...]
    others: frozenset[str] = frozenset()

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], top_k: int) -> "Codebook":
        """The `top_k` most frequent by name; up to `_MAX_OTHERS` more remembered as "other"
        (an identifier-like column would otherwise carry millions of names). Rarer ones than
        that are indistinguishable from unseen categories."""
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls(
            tuple(name for name, _ in ranked[:top_k]),
            frozenset(name for name, _ in ranked[top_k : top_k + _MAX_OTHERS]),
        )

    @property
    def other(self) -> int:
        return len(self.top)

    @property
    def unseen(self) -> int:
        return len(self.top) + 1

    @property
    def null(self) -> int:
        return len(self.top) + 2

    @property
    def n_bins(self) -> int:
        return len(self.top) + 3

    def codes_for(self, labels: Iterable[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.top)}
        return np.array(
            [index.get(s, self.other if s in self.others else self.unseen) for s in labels],
            dtype=np.intp,
        )


# --- column profiles ------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnProfile:
    """Counts per bin of one column; numerical columns also keep per-bin sums and moments."""

    counts: np.ndarray  # int64 per bin; the last bin is null
    sums: np.ndarray | None = None  # numerical: float64 sum of the values in each bin
    sum_squares: float = 0.0  # numerical: of the deviations from `origin`
    minimum: float = math.nan
    maximum: float = math.nan
    unseen: Mapping[str, int] = field(default_factory=dict)  # categorical: examples
    origin: float = 0.0  # numerical: the grid's low edge

    @property
    def n_rows(self) -> int:
        return int(self.counts.sum())

    @property
    def n_null(self) -> int:
        return int(self.counts[-1])

    @property
    def n_values(self) -> int:
        return self.n_rows - self.n_null

    @property
    def null_rate(self) -> float:
        return self.n_null / self.n_rows if self.n_rows else 0.0

    @property
    def mean(self) -> float:
        return float(self.sums[:-1].sum() / self.n_values) if self.n_values else math.nan

    @property
    def std(self) -> float:
        if not self.n_values:
            return math.nan
        offset = self.mean - self.origin
        return math.sqrt(max(self.sum_squares / self.n_values - offset**2, 0.0))

    def merge(self, other: "ColumnProfile") -> "ColumnProfile":
        return ColumnProfile.total([self, other])

    @staticmethod
    def total(parts: list["ColumnProfile"]) -> "ColumnProfile":
        """The exact merge of profiles binned on one reference: counts and sums add (into one
        accumulator, so merging a 30-day window allocates once per column)."""
        first = parts[0]
        if any(p.counts.shape != first.counts.shape or p.origin != first.origin for p in parts):
            raise DataError("cannot merge column profiles binned on different references")
        counts = _accumulate([p.counts for p in parts])
        sums = None if first.sums is None else _accumulate([p.sums for p in parts])
        unseen = Counter()
        for p in parts:
            unseen.update(p.unseen)
        return ColumnProfile(
            counts,
            sums,
            sum(p.sum_squares for p in parts),
            float(np.fmin.reduce([p.minimum for p in parts])),
            float(np.fmax.reduce([p.maximum for p in parts])),
            _top_examples(unseen),
            first.origin,
        )

    def without(self, part: "ColumnProfile") -> "ColumnProfile":
        """This profile minus a merged-in part (counts subtract; min and max are kept)."""
        return replace(
            self,
            counts=self.counts - part.counts,
            sums=None if self.sums is None else self.sums - part.sums,
            sum_squares=self.sum_squares - part.sum_squares,
            unseen={},
        )


def _accumulate(arrays: list[np.ndarray]) -> np.ndarray:
    """Sum in place into one copy: the accumulator stays in cache while the parts stream by."""
    total = arrays[0].copy()
    for array in arrays[1:]:
        np.add(total, array, out=total)
    return total


def _top_examples(counts: Mapping[str, int]) -> dict[str, int]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dict(ranked[:_UNSEEN_EXAMPLES])


def categorical_profile(
    indices: np.ndarray, labels: list[str], codebook: Codebook
) -> ColumnProfile:
    """`indices` point into `labels`, -1 for null. Counting per label first keeps it O(rows)."""
    per_label = np.bincount(indices + 1, minlength=len(labels) + 1)
    codes = np.append(codebook.codes_for(labels), codebook.null)
    counts = np.bincount(np.roll(codes, 1), weights=per_label, minlength=codebook.n_bins).astype(
        np.int64
    )
    unseen = {
        labels[i]: int(per_label[i + 1])
        for i in np.flatnonzero(codes[:-1] == codebook.unseen)
        if per_label[i + 1]
    }
    return ColumnProfile(counts, unseen=_top_examples(unseen))


def empty_profile(n_bins: int, numerical: bool) -> ColumnProfile:
    return ColumnProfile(np.zeros(n_bins, np.int64), np.zeros(n_bins) if numerical else None)


# --- batches: the one way data is read --------------------------------------------------------


class Batch:
    """Column access over a pandas DataFrame or an Arrow table/record batch, without copies
    beyond the one numpy array each column needs."""

    def __init__(self, data: pd.DataFrame | pa.Table | pa.RecordBatch):
        self._data = data
        self._arrow = not isinstance(data, pd.DataFrame)
        self._categorical: dict[str, tuple[np.ndarray, list[str]]] = {}

    def __len__(self) -> int:
        return self._data.num_rows if self._arrow else len(self._data)

    @property
    def column_names(self) -> list[str]:
        return list(self._data.column_names if self._arrow else self._data.columns)

    def rows(self, positions: np.ndarray, columns: list[str]) -> pd.DataFrame:
        if self._arrow:
            return self._data.take(positions).select(columns).to_pandas()
        return self._data.iloc[positions][columns].reset_index(drop=True)

    def numeric(self, name: str) -> np.ndarray:
        column = self._data.column(name) if self._arrow else self._data[name]
        if self._arrow:
            if not (
                pa.types.is_integer(column.type)
                or pa.types.is_floating(column.type)
                or pa.types.is_null(column.type)
                or pa.types.is_boolean(column.type)
            ):
                raise DataError(f"column {name!r} should be numerical but has type {column.type}")
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        if not (pd.api.types.is_numeric_dtype(column) or column.isna().all()):
            raise DataError(f"column {name!r} should be numerical but has dtype {column.dtype}")
        return column.to_numpy(dtype=float, na_value=np.nan)

    def categorical(self, name: str) -> tuple[np.ndarray, list[str]]:
        """Row indices into a list of labels (-1 for null); computed once per column."""
        if name not in self._categorical:
            self._categorical[name] = self._encode(name)
        return self._categorical[name]

    def _encode(self, name: str) -> tuple[np.ndarray, list[str]]:
        if self._arrow:
            column = self._data.column(name)
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            if pa.types.is_floating(column.type):
                column = pc.if_else(pc.is_nan(column), None, column)  # NaN is missing, as in pandas
            if not pa.types.is_dictionary(column.type):
                column = pc.dictionary_encode(column)
            indices = column.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            uniques = column.dictionary.to_pandas()
        else:
            series = self._data[name]
            if isinstance(series.dtype, pd.CategoricalDtype):
                indices, uniques = series.cat.codes.to_numpy(), series.cat.categories.to_series()
            else:
                indices, uniques = pd.factorize(series, use_na_sentinel=True)
                uniques = pd.Series(uniques)
        return indices.astype(np.intp), list(category_labels(pd.Series(uniques)))


def category_labels(values: pd.Series) -> pd.Series:
    """Category values as text, each whole number written as an integer.

    An integer-coded column becomes float as soon as a partition holds a null (1 -> 1.0);
    comparing text as-is would make every category look new. Decided per value, so a
    category's label does not depend on which other values share its batch.
    """
    if pd.api.types.is_integer_dtype(values):
        return values.astype(str)  # exact, also beyond 2**53 where float would merge codes
    if pd.api.types.is_float_dtype(values):
        return values.map(_number_label)
    return values.astype(str)


def _number_label(value: float) -> str:
    if math.isfinite(value) and value == round(value) and abs(value) < 2**63:
        return str(int(value))
    return str(value)


Source = pd.DataFrame | pa.Table | str | Path | list[str | Path]  # a list: Parquet files


def iter_batches(source: Source, columns: list[str], categorical: list[str]) -> Iterator[Batch]:
    """The source in batches. Parquet files are read by row group and column, never whole:
    only `columns` (all of which must exist) are read, and categorical columns stay
    dictionary-encoded."""
    if isinstance(source, pd.DataFrame | pa.Table):
        _require_columns(Batch(source).column_names, columns)
        yield Batch(source)
        return
    for path in _paths(source):
        parquet = pq.ParquetFile(path, read_dictionary=categorical)
        _require_columns(parquet.schema_arrow.names, columns, path)
        # Row group by row group: measured here, `iter_batches` took 5x longer and its peak
        # memory grew with the file (1 GB for 3M rows), where this stays at one row group.
        for group in range(parquet.num_row_groups):
            yield Batch(parquet.read_row_group(group, columns=columns))


def _paths(source: Source) -> list[Path]:
    paths = [Path(p) for p in (source if isinstance(source, list) else [source])]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"no Parquet file at {', '.join(missing)}")
    if not paths:
        raise DataError("no Parquet files given")
    return paths


def source_rows(source: Source) -> int:
    if isinstance(source, pd.DataFrame):
        return len(source)
    if isinstance(source, pa.Table):
        return source.num_rows
    return sum(pq.ParquetFile(p).metadata.num_rows for p in _paths(source))


def source_columns(source: Source) -> list[str]:
    """Columns every part of the source has."""
    if isinstance(source, pd.DataFrame | pa.Table):
        return Batch(source).column_names
    schemas = [pq.ParquetFile(p).schema_arrow.names for p in _paths(source)]
    return [c for c in schemas[0] if all(c in names for names in schemas[1:])]


def _require_columns(available: list[str], columns: list[str], where: object = "data") -> None:
    missing = [c for c in columns if c not in available]
    if missing:
        raise DataError(f"{where} lacks watched columns {missing}")


# --- the profile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Column profiles of the whole population and of each segment, binned on one reference.

    `segments` maps a segment key such as "region=eu" or "region=eu&plan=pro" to that
    segment's column profiles; `reference_id` names the reference the bins come from, and only
    profiles of the same reference merge.
    """

    reference_id: str
    n_rows: int
    columns: Mapping[str, ColumnProfile]
    segments: Mapping[str, Mapping[str, ColumnProfile]] = field(default_factory=dict)
    segment_rows: Mapping[str, int] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)  # column -> why it is absent

    def merge(self, other: "Profile") -> "Profile":
        return Profile.merge_all([self, other])

    @staticmethod
    def merge_all(profiles: Iterable["Profile"]) -> "Profile":
        """The exact merge of profiles of one reference (a window of days, say)."""
        parts = list(profiles)
        if not parts:
            raise DataError("no profiles to merge")
        first = parts[0]
        for other in parts[1:]:
            if other.reference_id != first.reference_id:
                raise DataError(
                    f"cannot merge a profile binned on reference {other.reference_id} into one "
                    f"binned on {first.reference_id}: re-profile the data against one reference"
                )
        if len(parts) == 1:
            return first
        keys = sorted({key for p in parts for key in p.segments})
        rows = Counter()
        for p in parts:
            rows.update(p.segment_rows)
        return Profile(
            first.reference_id,
            sum(p.n_rows for p in parts),
            _total_columns([p.columns for p in parts]),
            {key: _total_columns([p.segments.get(key, {}) for p in parts]) for key in keys},
            dict(sorted(rows.items())),
            {name: reason for p in parts for name, reason in p.problems.items()},
        )

    def save(self, path: Path) -> None:
        write_atomically(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> "Profile":
        path = Path(path)
        if not path.exists():
            raise DataError(f"no profile at {path}")
        return cls.from_bytes(path.read_bytes())

    def to_bytes(self) -> bytes:
        arrays = _columns_to_arrays(OVERALL, self.columns)
        for key, columns in self.segments.items():
            arrays.update(_columns_to_arrays(key, columns))
        header = {
            "reference_id": self.reference_id,
            "n_rows": self.n_rows,
            "segment_rows": dict(self.segment_rows),
            "problems": dict(self.problems),
            "columns": list(self.columns),
            "segments": {key: list(columns) for key, columns in self.segments.items()},
            "moments": {
                _array_key(seg, c): [p.sum_squares, p.minimum, p.maximum, p.unseen, p.origin]
                for seg, columns in [(OVERALL, self.columns), *self.segments.items()]
                for c, p in columns.items()
            },
        }
        return arrays_to_bytes(header, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Profile":
        header, arrays = arrays_from_bytes(data)
        try:
            return cls._from_arrays(header, arrays)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"unreadable profile: {e!r}") from e

    @classmethod
    def _from_arrays(cls, header: dict, arrays: dict) -> "Profile":

        def columns(segment: str, names: list[str]) -> dict[str, ColumnProfile]:
            return {
                name: _column_from_arrays(segment, name, arrays, header["moments"])
                for name in names
            }

        return cls(
            header["reference_id"],
            header["n_rows"],
            columns(OVERALL, header["columns"]),
            {key: columns(key, names) for key, names in header["segments"].items()},
            header["segment_rows"],
            header["problems"],
        )


def _total_columns(parts: list[Mapping[str, ColumnProfile]]) -> dict[str, ColumnProfile]:
    names = sorted({name for part in parts for name in part})
    return {
        name: ColumnProfile.total([part[name] for part in parts if name in part]) for name in names
    }


# Profiles of small partitions are mostly empty bins: stored sparse (index, value).
def _array_key(segment: str, column: str) -> str:
    return f"{segment}|{column}"


def _columns_to_arrays(segment: str, columns: Mapping[str, ColumnProfile]) -> dict:
    arrays = {}
    for name, profile in columns.items():
        key = _array_key(segment, name)
        nonzero = np.flatnonzero(profile.counts)
        counts = profile.counts[nonzero]
        arrays[f"{key}|size"] = np.array([profile.counts.size])
        arrays[f"{key}|index"] = nonzero.astype(_narrowest(profile.counts.size))
        arrays[f"{key}|counts"] = counts.astype(_narrowest(counts.max(initial=0) + 1))
        if profile.sums is not None:
            arrays[f"{key}|sums"] = profile.sums[nonzero]
    return arrays


def _narrowest(bound: int) -> type:
    """The smallest unsigned type holding values below `bound`: files stay small without the
    decompression cost that makes loading a 30-day window slow."""
    return next(t for t in (np.uint16, np.uint32, np.uint64) if bound <= np.iinfo(t).max)


def _column_from_arrays(
    segment: str, name: str, arrays: Mapping, moments: Mapping
) -> ColumnProfile:
    key = _array_key(segment, name)
    size = int(arrays[f"{key}|size"][0])
    index = arrays[f"{key}|index"]
    counts = np.zeros(size, np.int64)
    counts[index.astype(np.intp)] = arrays[f"{key}|counts"]
    sums = None
    if f"{key}|sums" in arrays:
        sums = np.zeros(size)
        sums[index.astype(np.intp)] = arrays[f"{key}|sums"]
    return ColumnProfile(counts, sums, *moments[key])


def arrays_to_bytes(header: dict, arrays: Mapping[str, np.ndarray]) -> bytes:
    """A JSON header and named arrays as one .npz. No pickles: the file is data, not code."""
    buffer = io.BytesIO()
    encoded = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(buffer, __header__=encoded, **arrays)
    return buffer.getvalue()


def arrays_from_bytes(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        header = json.loads(arrays.pop("__header__").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"unreadable profile file: {e}") from e
    return header, arrays


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
