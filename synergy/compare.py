"""Two studies side by side: Table 6 (paper §3, every way of combining SFT and RL) and the per-level gains over
the base model (paper Fig. 1 / 6), read from two study folders ``results/<name>/``.

    python -m synergy.compare results/embedded results/mine            # Markdown to stdout
    python -m synergy.compare results/seed0 results/seed1 --by-bench   # gains per benchmark too
    python -m synergy.compare A B --out results/compare                # also CSV files

Each table gets, for every measured column, the value of study A, of study B and B - A. The per-level gain of
an arm over its reference is the level_gain table's ``gain`` (points, paired over the same questions within a
study); pooled over benchmarks it is weighted by each benchmark's questions at that level (``--by-bench``
keeps the benchmarks apart). An arm or level only one study has shows an empty cell for the other.
Reads the tables only (CSV), nothing is recomputed; a missing table is named with the target that builds it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import polars as pl

from synergy.report.tables import to_markdown

TABLE6 = "tables/table6_synergy.csv"
GAINS = "tables/level_gain.csv"
KEYS6 = ("arm",)


def _read(study: Path, rel: str) -> pl.DataFrame:
    path = study / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: build it with `snakemake {study.as_posix()}/{rel}` "
                                "(and that study's --configfile)")
    return pl.read_csv(path)


def side_by_side(a: pl.DataFrame, b: pl.DataFrame, keys: Sequence[str], names: tuple[str, str]) -> pl.DataFrame:
    """Join two tables of one layout on ``keys``: each numeric column as ``col [A]``, ``col [B]``, ``col B-A``;
    rows of either table, A's order first."""
    keys = list(keys)
    numeric = [c for c in a.columns if c not in keys and c in b.columns and a.schema[c].is_numeric()
               and b.schema[c].is_numeric()]
    na, nb = names
    left = a.select(*keys, *[pl.col(c).cast(pl.Float64).alias(f"{c} [{na}]") for c in numeric])
    right = b.select(*keys, *[pl.col(c).cast(pl.Float64).alias(f"{c} [{nb}]") for c in numeric])
    joined = left.join(right, on=keys, how="full", coalesce=True, maintain_order="left_right")
    cols = list(keys)
    for c in numeric:
        joined = joined.with_columns((pl.col(f"{c} [{nb}]") - pl.col(f"{c} [{na}]")).alias(f"{c} {nb}-{na}"))
        cols += [f"{c} [{na}]", f"{c} [{nb}]", f"{c} {nb}-{na}"]
    return joined.select(cols)


def pooled_gains(gains: pl.DataFrame, by_bench: bool = False) -> pl.DataFrame:
    """Gain per (arm, reference[, bench]) and level, pooled over benchmarks weighted by questions; wide by level."""
    keys = ["arm", "reference", *(["bench"] if by_bench else [])]
    g = gains.filter(pl.col("gain").is_not_null() & (pl.col("questions") > 0))
    pooled = (g.group_by(*keys, "level", maintain_order=True)
              .agg(((pl.col("gain") * pl.col("questions")).sum() / pl.col("questions").sum()).alias("gain")))
    levels = sorted(pooled["level"].unique().to_list())
    wide = pooled.pivot(on="level", index=keys, values="gain", maintain_order=True)
    return wide.select(*keys, *[lv for lv in levels if lv in wide.columns])


def compare(study_a: str | Path, study_b: str | Path, by_bench: bool = False) -> dict[str, pl.DataFrame]:
    """``{"table6_synergy": ..., "level_gain": ...}`` side by side for two study folders."""
    a, b = Path(study_a), Path(study_b)
    names = (a.name, b.name) if a.name != b.name else ("A", "B")
    t6 = side_by_side(_read(a, TABLE6), _read(b, TABLE6), KEYS6, names)
    ga, gb = pooled_gains(_read(a, GAINS), by_bench), pooled_gains(_read(b, GAINS), by_bench)
    keys = ["arm", "reference", *(["bench"] if by_bench else [])]
    gains = side_by_side(ga, gb, keys, names)
    return {"table6_synergy": t6, "level_gain": gains}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synergy.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("study_a", help="a study's folder, e.g. results/embedded")
    ap.add_argument("study_b", help="another study's folder, e.g. results/smoke")
    ap.add_argument("--by-bench", action="store_true", help="per-level gains per benchmark (default: pooled)")
    ap.add_argument("--out", help="also write <out>/table6_synergy.csv and <out>/level_gain.csv")
    args = ap.parse_args(argv)
    try:
        tables = compare(args.study_a, args.study_b, args.by_bench)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    titles = {"table6_synergy": "Table 6: accuracy (%) of SFT, RL and their combinations",
              "level_gain": "Accuracy gain (points) over the reference arm by difficulty level"
                            + (" and benchmark" if args.by_bench else ", pooled over benchmarks")}
    for name, df in tables.items():
        print(f"## {titles[name]}: {args.study_a} vs {args.study_b}\n\n{to_markdown(df)}")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            df.write_csv(Path(args.out) / f"{name}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
