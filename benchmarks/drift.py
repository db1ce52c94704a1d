"""`make bench`: drift speed and memory, as ratios to a floor measured in the same run.

The floor is numpy summing every column of both frames once (one pass over the memory the
data occupies); a drift engine cannot beat it, and the ratio says how far from it we are on
whatever machine this runs. Scenarios:

- fit + profile + compare, reference and current of 100k, 1M and 10M rows, 25 columns
  (20 numerical, normal and lognormal with about 1% nulls; 5 categorical, cardinalities 5, 5,
  50, 50 and 1000, dictionary-encoded as Parquet reads them);
- the same at 1M rows with the columns doubled (linear in columns);
- for scale, a naive numpy implementation (quantile edges, searchsorted, scipy's exact KS and
  Wasserstein on the raw values) at 1M rows;
- 10M rows profiled straight from a Parquet file, in a child process, with its peak RSS;
- a 30-day window: 30 daily profiles merged and compared with the reference.

    python -m benchmarks.drift [--max-rows 10000000]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from scipy import stats

from orchestrator.core.drift import DriftDetector, DriftSpec
from orchestrator.core.profile import Profile
from orchestrator.core.spec import DriftPolicy, FeatureKind

CARDINALITIES = (5, 5, 50, 50, 1000)
console = Console(width=160)


def make_frame(rows: int, seed: int, shift: float = 0.0, copies: int = 1) -> pd.DataFrame:
    """Seeded benchmark data; `shift` moves every numerical column by that many stds."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for copy in range(copies):
        for i in range(20):
            values = rng.normal(size=rows) if i < 10 else rng.lognormal(size=rows)
            values += shift * (1.0 if i < 10 else 2.16)
            values[rng.random(rows) < 0.01] = np.nan
            columns[f"x{i}_{copy}"] = values
        for i, cardinality in enumerate(CARDINALITIES):
            categories = [f"c{cardinality}_{k}" for k in range(cardinality)]
            weights = 1.0 / np.arange(1, cardinality + 1)  # Zipf-like: a few frequent ones
            codes = rng.choice(cardinality, size=rows, p=weights / weights.sum())
            columns[f"k{i}_{copy}"] = pd.Categorical.from_codes(codes, categories=categories)
    return pd.DataFrame(columns)


def spec_for(frame: pd.DataFrame) -> DriftSpec:
    kinds = {
        c: FeatureKind.CATEGORICAL
        if isinstance(frame[c].dtype, pd.CategoricalDtype)
        else (FeatureKind.NUMERICAL)
        for c in frame.columns
    }
    return DriftSpec(columns=kinds, policy=DriftPolicy())


def best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def floor_seconds(reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> float:
    arrays = [
        frame[c].cat.codes.to_numpy()
        if isinstance(frame[c].dtype, pd.CategoricalDtype)
        else frame[c].to_numpy()
        for frame in (reference, current)
        for c in frame.columns
    ]
    return best_of(lambda: [a.sum() for a in arrays], repeats)


def driftgate_seconds(reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> float:
    spec = spec_for(reference)

    def run() -> None:
        detector = DriftDetector(spec).fit(reference)
        detector.compare(detector.profile(current))

    return best_of(run, repeats)


def naive_seconds(reference: pd.DataFrame, current: pd.DataFrame) -> float:
    """What a hand-rolled check does: quantile bins for PSI, then exact KS and Wasserstein."""

    def run() -> None:
        for column in reference.columns:
            if isinstance(reference[column].dtype, pd.CategoricalDtype):
                reference[column].value_counts(), current[column].value_counts()
                continue
            ref = reference[column].dropna().to_numpy()
            cur = current[column].dropna().to_numpy()
            edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
            np.bincount(np.searchsorted(edges, ref)), np.bincount(np.searchsorted(edges, cur))
            stats.ks_2samp(ref, cur)
            stats.wasserstein_distance(ref, cur)

    return best_of(run, 1)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    over exec from the forked parent, which holds the in-memory scenarios' frames."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def parquet_child(detector_path: str, parquet_path: str) -> None:
    """Runs in a child process so its peak RSS is the profile's alone (plus the interpreter)."""
    detector = DriftDetector.load(Path(detector_path))
    start = time.perf_counter()
    profile = detector.profile(parquet_path)
    report = detector.compare(profile)
    seconds = time.perf_counter() - start
    peak_mb = peak_rss_mb()
    sys.stdout.write(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak_mb,
                "rows": profile.n_rows,
                "verdict": report.verdict.value,
            }
        )
        + "\n"
    )


def parquet_scenario(rows: int, workdir: Path) -> dict:
    reference = make_frame(1_000_000, seed=1)
    detector = DriftDetector(spec_for(reference)).fit(reference)
    detector_path = workdir / "reference.npz"
    detector.save(detector_path)
    parquet_path = workdir / "current.parquet"
    chunk = min(rows, 1_000_000)
    writer = None
    for i in range(rows // chunk):
        table = pa.Table.from_pandas(make_frame(chunk, seed=100 + i), preserve_index=False)
        writer = writer or pq.ParquetWriter(parquet_path, table.schema)
        writer.write_table(table, row_group_size=250_000)
    writer.close()
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.drift",
            "--child",
            str(detector_path),
            str(parquet_path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def window_scenario(days: int = 30, rows_per_day: int = 100_000) -> tuple[float, float]:
    reference = make_frame(1_000_000, seed=1)
    detector = DriftDetector(spec_for(reference)).fit(reference)
    daily = [detector.profile(make_frame(rows_per_day, seed=200 + d)) for d in range(days)]
    merge_compare = best_of(lambda: detector.compare(Profile.merge_all(daily)), 5)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for d, profile in enumerate(daily):
            paths.append(Path(tmp) / f"{d}.npz")
            profile.save(paths[-1])
        with_load = best_of(
            lambda: detector.compare(Profile.merge_all(Profile.load(p) for p in paths)), 3
        )
    return merge_compare, with_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, default=10_000_000)
    parser.add_argument("--child", nargs=2, metavar=("DETECTOR", "PARQUET"))
    args = parser.parse_args()
    if args.child:
        parquet_child(*args.child)
        return

    table = Table(title="driftgate drift benchmark (fit + profile + compare)")
    for name in (
        "scenario",
        "rows (ref + cur)",
        "columns",
        "driftgate s",
        "floor s",
        "ratio to floor",
        "note",
    ):
        table.add_column(name)
    sizes = [n for n in (100_000, 1_000_000, 10_000_000) if n <= args.max_rows]
    per_row = {}
    for rows in sizes:
        reference, current = make_frame(rows, seed=1), make_frame(rows, seed=2)
        repeats = 3 if rows < 10_000_000 else 1
        floor = floor_seconds(reference, current, 5)
        ours = driftgate_seconds(reference, current, repeats)
        per_row[rows] = ours / rows
        # Against 1M rows: at 100k the fixed costs (placing the grids) dominate.
        base = per_row.get(1_000_000)
        linear = f"{per_row[rows] / base:.2f}x the 1M time per row" if base else ""
        table.add_row(
            "in memory",
            f"{rows:,} + {rows:,}",
            "25",
            f"{ours:.3f}",
            f"{floor:.4f}",
            f"{ours / floor:.1f}",
            linear,
        )
        if rows == 1_000_000:
            naive = naive_seconds(reference, current)
            table.add_row(
                "naive numpy + scipy",
                f"{rows:,} + {rows:,}",
                "25",
                f"{naive:.3f}",
                f"{floor:.4f}",
                f"{naive / floor:.1f}",
                "for scale",
            )
            wide_ref = make_frame(rows, seed=1, copies=2)
            wide_cur = make_frame(rows, seed=2, copies=2)
            wide = driftgate_seconds(wide_ref, wide_cur, repeats)
            wide_floor = floor_seconds(wide_ref, wide_cur, 5)
            table.add_row(
                "in memory, columns doubled",
                f"{rows:,} + {rows:,}",
                "50",
                f"{wide:.3f}",
                f"{wide_floor:.4f}",
                f"{wide / wide_floor:.1f}",
                f"{wide / ours:.2f}x the 25-column time",
            )
            del wide_ref, wide_cur
        del reference, current
    if args.max_rows >= 10_000_000:
        with tempfile.TemporaryDirectory() as tmp:
            child = parquet_scenario(10_000_000, Path(tmp))
        table.add_row(
            "Parquet file, streamed",
            f"1,000,000 + {child['rows']:,}",
            "25",
            f"{child['seconds']:.3f}",
            "",
            "",
            f"peak RSS {child['peak_mb']:.0f} MB",
        )
    merge_compare, with_load = window_scenario()
    table.add_row(
        "30 daily profiles merged + compared",
        "1,000,000 + 30 x 100,000",
        "25",
        f"{merge_compare:.4f}",
        "",
        "",
        f"{with_load:.3f} s including loading files",
    )
    console.print(table)


if __name__ == "__main__":
    main()
