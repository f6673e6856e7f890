"""Write a table as CSV and as a Markdown file next to it (``results/<study>/tables/{table}.csv`` + ``.md``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from synergy.io import write_text


# Columns that hold settings, not measurements: printed exactly (an SFT ratio of 0.25 is not "0.2").
EXACT_COLUMNS = frozenset({"sft_ratio", "threshold"})


def to_markdown(df: pl.DataFrame, float_digits: int = 1) -> str:
    """A GitHub-flavoured Markdown table (measured floats rounded to ``float_digits``; ``EXACT_COLUMNS`` as given)."""
    def fmt(v, column):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:g}" if column in EXACT_COLUMNS else f"{v:.{float_digits}f}"
        return str(v)

    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v, c) for v, c in zip(row, df.columns)) + " |" for row in df.iter_rows()]
    return "\n".join([head, sep, *body]) + "\n"


def write_table(df: pl.DataFrame, csv_path: str | Path, md_path: str | Path | None = None, title: str = "") -> None:
    """CSV for machines, Markdown for people; both written atomically."""
    csv_path = Path(csv_path)
    write_text(df.write_csv(), csv_path)
    md_path = Path(md_path) if md_path else csv_path.with_suffix(".md")
    write_text((f"# {title}\n\n" if title else "") + to_markdown(df), md_path)


def table_arms(evals: pl.DataFrame, arms: list[str], benches: list[str], extra: dict[str, dict] | None = None) -> pl.DataFrame:
    """The paper's Tables 1–3 / 6 layout: one row per arm, accuracy (%) per benchmark and the average.

    ``extra`` adds leading columns per arm (e.g. Table 1's Modality and Data), ``{arm: {column: value}}``.
    """
    from synergy.analysis import arms_by_bench

    table = arms_by_bench(evals, arms, benches)
    if extra:
        cols = list(dict.fromkeys(c for v in extra.values() for c in v))  # first-seen order
        add = pl.DataFrame([{"arm": a, **{c: str(extra.get(a, {}).get(c, "–")) for c in cols}} for a in arms])
        table = add.join(table, on="arm", how="left", maintain_order="left")
    return table


TITLES = {
    "table1_sft_data": "Table 1: accuracy (%) of SFT on different long-CoT data",
    "table2_kl": "Table 2: accuracy (%) of RL with and without the KL loss",
    "table3_easy": "Table 3: accuracy (%) of RL with and without the easiest questions",
    "table6_synergy": "Table 6: accuracy (%) of SFT, RL and every way of combining them",
    "table7_length": "Table 7: accuracy (%) and response length (tokens) of RL and data mixing",
    "merge_grid": "Model merging: accuracy (%) by method and SFT-model ratio (0 = the RL arm, 1 = the SFT arm)",
    "level_accuracy": "Accuracy (%) and response length (tokens) by arm, benchmark and difficulty level",
}


def _sft_data_columns(arms: list[str], arm_specs: list[dict], train_sets: list[dict]) -> dict[str, dict]:
    """Table 1's Modality and Data columns from each SFT arm's training set."""
    specs = {a["name"]: a for a in arm_specs}
    sets = {t["name"]: t for t in train_sets}
    extra = {}
    for arm in arms:
        ts = sets.get(specs[arm].get("train_set") or "")
        if specs[arm]["kind"] == "base" or ts is None:
            extra[arm] = {"modality": "–", "data": "–"}
        else:
            extra[arm] = {"modality": "text" if ts.get("modality") == "text" else "visual",
                          "data": f"{ts['name']} ({ts.get('num_questions', '?')})"}
    return extra


def length_table(evals: pl.DataFrame, arms: list[str], benches: list[str]) -> pl.DataFrame:
    """Table 7's content, long: (arm, bench, accuracy %, mean response tokens), with bench ``avg`` per arm."""
    from synergy.analysis import by_bench

    scores = by_bench(evals)
    rows = []
    for arm in arms:
        per = [scores.filter((pl.col("arm") == arm) & (pl.col("bench") == b)) for b in benches]
        vals = [(b, p["accuracy"].item(), p["length"].item()) for b, p in zip(benches, per) if p.height]
        rows += [{"arm": arm, "bench": b, "accuracy": a, "length": n} for b, a, n in vals]
        if len(vals) == len(benches):
            rows.append({"arm": arm, "bench": "avg", "accuracy": sum(v[1] for v in vals) / len(vals),
                         "length": sum(v[2] for v in vals) / len(vals)})
    return pl.DataFrame(rows, schema={"arm": pl.String, "bench": pl.String, "accuracy": pl.Float64, "length": pl.Float64})


def merge_grid_table(evals: pl.DataFrame, cells: list[dict], benches: list[str], base_arm: str) -> pl.DataFrame:
    """Every (method, SFT ratio) cell x benchmark (+ ``avg``): accuracy, the base model's, and the gain (points).

    ``cells`` are ``{"method", "sft_ratio", "arm"}``; endpoint cells may name the parent arms.
    """
    from synergy.analysis import by_bench

    scores = {(r["arm"], r["bench"]): r["accuracy"] for r in by_bench(evals).iter_rows(named=True)}
    base = {b: scores.get((base_arm, b)) for b in benches}
    base["avg"] = sum(base.values()) / len(benches) if all(v is not None for v in base.values()) else None
    rows = []
    for c in cells:
        accs = {b: scores.get((c["arm"], b)) for b in benches}
        accs["avg"] = sum(accs.values()) / len(benches) if all(v is not None for v in accs.values()) else None
        for b in [*benches, "avg"]:
            a, ba = accs[b], base[b]
            rows.append({"method": c["method"], "sft_ratio": float(c["sft_ratio"]), "arm": c["arm"], "bench": b,
                         "accuracy": a, "base_accuracy": ba, "gain": a - ba if a is not None and ba is not None else None})
    return pl.DataFrame(rows, schema={"method": pl.String, "sft_ratio": pl.Float64, "arm": pl.String, "bench": pl.String,
                                      "accuracy": pl.Float64, "base_accuracy": pl.Float64, "gain": pl.Float64})


def build_arm_table(name: str, evals: pl.DataFrame, levels: pl.DataFrame, *, arms: list[str], benches: list[str],
                    arm_specs: list[dict], train_sets: list[dict], merge_cells: list[dict] | None = None
                    ) -> tuple[pl.DataFrame, str]:
    """The table called ``name`` (and its title) from the evaluation samples of its arms."""
    if name == "table7_length":
        return length_table(evals, arms, benches), TITLES[name]
    if name == "merge_grid":
        base_arm = next((a["name"] for a in arm_specs if a["kind"] == "base"), arms[0])
        return merge_grid_table(evals, merge_cells or [], benches, base_arm), TITLES[name]
    if name == "level_accuracy":
        from synergy.analysis import by_level

        table = by_level(evals, levels).sort(
            pl.col("arm").cast(pl.Enum(arms)), pl.col("bench").cast(pl.Enum(benches)), "level")
        return table, TITLES[name]
    extra = _sft_data_columns(arms, arm_specs, train_sets) if name == "table1_sft_data" else None
    return table_arms(evals, arms, benches, extra), TITLES.get(name, f"{name}: accuracy (%) by arm and benchmark")
