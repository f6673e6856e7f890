"""The paper's figures (arXiv 2507.07562; docs/paper.md §9), one function per kind of figure.

Each function takes pandas tables (read from CSV / parquet by the caller, see ``read_inputs``), the arms
to show and an optional path; it draws with matplotlib's object API (no pyplot state, Agg / PDF
canvases), writes a one-page PDF when given a path, and returns the ``Figure``. Arms that are asked
for but have no rows are left out and named in a note at the bottom of the figure
(gid ``absent-note``), so a study without, say, the combination arms still gets every figure.

Conventions: levels L1 (easiest) .. L5 on the x axis in that order; one panel per benchmark (plus an
average panel where the paper averages); one colour per arm across all figures; legends outside the
data (drawing primitives: synergy/report/plotting.py). Never imports torch.

    level_gain        Fig. 1 / 6  accuracy gain over the base model by level, 95% bootstrap intervals
    length            Fig. 2 / 8  mean response length by level (log scale)
    accuracy_length   Fig. 3      accuracy against mean response length
    dynamics          Fig. 4, 11, 12, 13  reward, entropy, response length, clip ratio over GRPO steps
    easy_gap          Fig. 5      per-level accuracy gap of two arms (with - without the easiest questions)
    words             Fig. 10     reasoning words per 1,000 responses
    merging           Fig. 14     merged models' gain over the base model against the SFT model's weight
    cost              (beyond)    average accuracy against each arm's cost (docs/cost.md)
    routing           (beyond)    routed arms' accuracy and tokens against the threshold (docs/routing.md)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synergy.report.plotting import (
    DYNAMICS,
    HYBRID_DYNAMICS,
    MERGE_COLOUR,
    METHOD_COLOURS,
    _arm_handle,
    _benches,
    _by_level,
    _empty,
    _finish,
    _legend,
    _level_x,
    _log_axis,
    _offsets,
    _panels,
    _present,
    arm_colour,
    arm_marker,
)


def level_gain(gains: pd.DataFrame, arms: Sequence[str], path: str | Path | None = None, *,
               reference: str | None = None, benches: Sequence[str] | None = None, caption: str = "",
               note: str = "") -> Figure:
    """Fig. 1 / 6: gain (points) of each arm over ``reference`` per level, one panel per benchmark, with
    the bootstrap interval (``gain``, ``ci_low``, ``ci_high`` of the level_gain table) as error bars."""
    df = gains if reference is None else gains[gains["reference"] == reference]
    arms = [a for a in arms if a != reference]
    present, absent = _present(arms, df["arm"])
    benches = _benches(df, benches)
    fig, axes, spare = _panels(len(benches))
    if not present:
        _empty(axes[0], f"no per-level gains over {reference or 'the base model'} for any of: {', '.join(arms)}")
    for ax, bench in zip(axes, benches if present else []):
        x = _level_x(ax)
        for off, arm in zip(_offsets(len(present)), present):
            d = df[(df["arm"] == arm) & (df["bench"] == bench)]
            g, lo, hi = (_by_level(d, c) for c in ("gain", "ci_low", "ci_high"))
            yerr = np.vstack([np.clip(g - lo, 0, None), np.clip(hi - g, 0, None)])
            ax.errorbar(x + off, g, yerr=yerr, color=arm_colour(arm), marker=arm_marker(arm), ms=4, lw=1.3,
                        capsize=2, elinewidth=0.8, label=arm)
        ax.axhline(0, color="0.5", lw=0.8, ls="--", zorder=0)
        ax.set_title(bench, fontsize=10)
        ax.set_ylabel(f"gain over {reference or 'base'} (points)")
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, [_arm_handle(a) for a in present], spare)
    return _finish(fig, caption, absent, note, path)


def length_by_level(levels: pd.DataFrame, arms: Sequence[str], path: str | Path | None = None, *,
                    benches: Sequence[str] | None = None, caption: str = "", note: str = "") -> Figure:
    """Fig. 2 / 8: mean response length (tokens, log scale) per level, one line per arm, a panel per benchmark."""
    present, absent = _present(arms, levels["arm"])
    benches = _benches(levels, benches)
    fig, axes, spare = _panels(len(benches))
    if not present:
        _empty(axes[0], f"no response lengths for any of: {', '.join(arms)}")
    for ax, bench in zip(axes, benches if present else []):
        x = _level_x(ax)
        for arm in present:
            d = levels[(levels["arm"] == arm) & (levels["bench"] == bench)]
            ax.plot(x, _by_level(d, "length"), color=arm_colour(arm), marker=arm_marker(arm), ms=4, lw=1.3, label=arm)
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        ax.set_title(bench, fontsize=10)
        ax.set_ylabel("mean response length (tokens)")
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, [_arm_handle(a) for a in present], spare)
    return _finish(fig, caption, absent, note, path)


def bench_scores(levels: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, bench) accuracy and length from the per-level table, weighting levels by questions, plus
    bench ``avg`` (the mean over benchmarks, as the tables' Avg column)."""
    d = levels[levels["questions"] > 0].copy()
    d["acc_q"] = d["accuracy"] * d["questions"]
    d["len_q"] = d["length"] * d["questions"]
    g = d.groupby(["arm", "bench"], sort=False)[["acc_q", "len_q", "questions"]].sum().reset_index()
    g["accuracy"] = g["acc_q"] / g["questions"]
    g["length"] = g["len_q"] / g["questions"]
    g = g[["arm", "bench", "accuracy", "length"]]
    avg = g.groupby("arm", sort=False)[["accuracy", "length"]].mean().reset_index().assign(bench="avg")
    return pd.concat([g, avg[["arm", "bench", "accuracy", "length"]]], ignore_index=True)


def accuracy_vs_length(levels: pd.DataFrame, arms: Sequence[str], path: str | Path | None = None, *,
                       benches: Sequence[str] | None = None, caption: str = "", note: str = "") -> Figure:
    """Fig. 3: accuracy (%) against mean response length (tokens, log scale), one point per arm, a panel per
    benchmark and one for the average over benchmarks."""
    present, absent = _present(arms, levels["arm"])
    scores = bench_scores(levels[levels["arm"].isin(present)]) if present else levels.iloc[0:0]
    panels = [*_benches(scores[scores["bench"] != "avg"], benches), "avg"] if present else ["avg"]
    fig, axes, spare = _panels(len(panels))
    if not present:
        _empty(axes[0], f"no accuracies for any of: {', '.join(arms)}")
    for ax, bench in zip(axes, panels if present else []):
        for arm in present:
            d = scores[(scores["arm"] == arm) & (scores["bench"] == bench)]
            ax.plot(d["length"], d["accuracy"], ls="none", color=arm_colour(arm), marker=arm_marker(arm), ms=7,
                    label=arm)
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        ax.set_title("average over benchmarks" if bench == "avg" else bench, fontsize=10)
        ax.set_xlabel("mean response length (tokens)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.margins(0.15)
    _legend(fig, [_arm_handle(a, line=False) for a in present], spare)
    return _finish(fig, caption, absent, note, path)


def training_dynamics(logs: Mapping[str, pd.DataFrame], arms: Sequence[str], path: str | Path | None = None, *,
                      caption: str = "", note: str = "") -> Figure:
    """Fig. 4 / 11 / 12 / 13: GRPO metrics over training steps, one line per arm: reward, entropy, response
    length and clip ratio, plus the hybrids' SFT loss and trace-prefix share when an arm logs them."""
    present, absent = _present(arms, [a for a, d in logs.items() if len(d)])
    metrics = list(DYNAMICS) + [(c, label) for c, label in HYBRID_DYNAMICS
                                if any(c in logs[a] and logs[a][c].notna().any() for a in present)]
    fig, axes, spare = _panels(len(metrics), ncols=2 if len(metrics) <= 4 else 3, size=(4.6, 2.9))
    if spare is not None:
        spare.remove()
        spare = None
    for ax, (col, label) in zip(axes, metrics):
        drawn = False
        for arm in present:
            d = logs[arm]
            if col in d and d[col].notna().any():
                ax.plot(d["step"], d[col], color=arm_colour(arm), lw=1.4, label=arm)
                drawn = True
        if not drawn:
            _empty(ax, f"{col} not logged" if present else "no training log of any requested arm")
        else:
            ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
        ax.set_ylabel(label)
        ax.set_title(label, fontsize=10)
    _legend(fig, [Line2D([], [], color=arm_colour(a), lw=1.8, label=a) for a in present])
    return _finish(fig, caption, absent, note, path)


def easy_gap(gains: pd.DataFrame, arms: Sequence[str], path: str | Path | None = None, *,
             benches: Sequence[str] | None = None, caption: str = "", note: str = "") -> Figure:
    """Fig. 5: accuracy of ``arms[0]`` minus ``arms[1]`` (e.g. RL with minus without the easiest questions)
    per level, bars with the bootstrap interval, one panel per benchmark."""
    if len(arms) != 2:
        raise ValueError(f"easy_gap needs two arms (with, without), got {list(arms)}")
    with_, without = arms
    df = gains[(gains["arm"] == with_) & (gains["reference"] == without)]
    absent = [] if len(df) else [a for a in arms if a not in set(gains["arm"]) | set(gains["reference"])] or list(arms)
    benches = _benches(df, benches)
    fig, axes, spare = _panels(len(benches))
    if spare is not None:
        spare.remove()
    if not len(df):
        _empty(axes[0], f"no per-level gap of {with_} over {without}")
    for ax, bench in zip(axes, benches):
        x = _level_x(ax)
        d = df[df["bench"] == bench]
        g, lo, hi = (_by_level(d, c) for c in ("gain", "ci_low", "ci_high"))
        yerr = np.vstack([np.clip(g - lo, 0, None), np.clip(hi - g, 0, None)])
        ax.bar(x, np.nan_to_num(g), yerr=np.nan_to_num(yerr), color=arm_colour(with_), alpha=0.85, capsize=3,
               error_kw={"elinewidth": 0.9})
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_title(bench, fontsize=10)
        ax.set_ylabel(f"{with_} − {without} (points)")
        ax.grid(axis="y", alpha=0.3)
    return _finish(fig, caption, absent, note, path)


def reasoning_words(words: pd.DataFrame, arms: Sequence[str], path: str | Path | None = None, *,
                    caption: str = "", note: str = "") -> Figure:
    """Fig. 10: occurrences of each reasoning word per 1,000 responses (symlog scale), bars grouped by word."""
    present, absent = _present(arms, words["arm"])
    vocab = list(dict.fromkeys(words["word"]))
    fig = Figure(figsize=(max(8.0, 1.1 * len(vocab) + 3.0), 5.0), layout="constrained")
    ax = fig.subplots()
    if not present:
        _empty(ax, f"no reasoning-word counts for any of: {', '.join(arms)}")
    else:
        x = np.arange(len(vocab))
        width = 0.8 / len(present)
        for i, arm in enumerate(present):
            d = words[words["arm"] == arm].set_index("word")["per_1k"].reindex(vocab).fillna(0.0)
            ax.bar(x + (i - (len(present) - 1) / 2) * width, d.to_numpy(), width, color=arm_colour(arm), label=arm)
        ax.set_xticks(x, vocab)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(0, None)
        ax.set_xlabel("reasoning word (counted where a word starts with it, any case)")
        ax.set_ylabel("occurrences per 1,000 responses")
        ax.grid(axis="y", alpha=0.3)
        responses = words.drop_duplicates("arm").set_index("arm")["responses"]
        fig.legend([_bar_handle(a) for a in present], [f"{a} ({int(responses[a])} responses)" for a in present],
                   loc="outside right upper", frameon=False, fontsize=9)
    return _finish(fig, caption, absent, note, path)


def _bar_handle(arm: str):
    from matplotlib.patches import Patch

    return Patch(color=arm_colour(arm), label=arm)


def merging(grid: pd.DataFrame | None, path: str | Path | None = None, *, benches: Sequence[str] | None = None,
            caption: str = "", note: str = "") -> Figure:
    """Fig. 14: gain over the base model (points) against the SFT model's weight, one line per merge method,
    a panel per benchmark and the average. ``grid`` is results/<study>/tables/merge_grid.csv (None: no merging)."""
    if grid is None or not len(grid):
        fig, axes, _ = _panels(1, size=(6.0, 3.5))
        _empty(axes[0], "no merge grid in this study")
        return _finish(fig, caption, [], note, path)
    missing = sorted(set(grid.loc[grid["accuracy"].isna(), "arm"]))
    methods = list(dict.fromkeys(grid["method"]))
    panels = _benches(grid[grid["bench"] != "avg"], benches) + (["avg"] if (grid["bench"] == "avg").any() else [])
    fig, axes, spare = _panels(len(panels))
    for ax, bench in zip(axes, panels):
        for method in methods:
            d = grid[(grid["method"] == method) & (grid["bench"] == bench)].sort_values("sft_ratio")
            ax.plot(d["sft_ratio"], d["gain"], marker="o", ms=4, lw=1.4, color=METHOD_COLOURS.get(method, MERGE_COLOUR),
                    label=method)
        ax.axhline(0, color="0.5", lw=0.8, ls="--", zorder=0)
        ratios = sorted(set(grid["sft_ratio"]))
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.set_xlabel("SFT model's weight (0 = RL, 1 = SFT)")
        ax.set_ylabel("gain over base (points)")
        ax.set_title("average over benchmarks" if bench == "avg" else bench, fontsize=10)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=METHOD_COLOURS.get(m, MERGE_COLOUR), marker="o", label=m) for m in methods]
    _legend(fig, handles, spare, title="merge method")
    return _finish(fig, caption, missing, note, path)


def cost_accuracy(cost: pd.DataFrame, levels: pd.DataFrame, arms: Sequence[str], path=None, *, caption: str = "",
                note: str = ""):
    """Average accuracy over benchmarks against each arm's own cost (training + what it builds on): GPU-hours when
    any rule asked for GPUs, else wall hours of the same jobs (synergy/report/cost.py); one point per arm (every arm of the study)."""
    d = cost[cost["arm"].isin(arms)].set_index("arm")
    scores = bench_scores(levels[levels["arm"].isin(arms)])
    avg = scores[scores["bench"] == "avg"].set_index("arm")["accuracy"]
    present = [a for a in arms if a in d.index and a in avg.index]
    absent = [a for a in arms if a not in present]
    gpu = bool((d["own_gpu_hours"] > 0).any())
    x = d["own_gpu_hours"] if gpu else (d["train_s"] + d["builds_on_s"]) / 3600
    fig, axes, spare = _panels(1, ncols=1, size=(6.0, 4.2))
    ax = axes[0]
    for arm in present:
        ax.plot([x[arm]], [avg[arm]], ls="none", color=arm_colour(arm), marker=arm_marker(arm), ms=8)
        ax.annotate(arm, (x[arm], avg[arm]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("GPU-hours of the arm's training and what it builds on" if gpu
                  else "wall hours of the arm's training and what it builds on (no rule asked for GPUs)")
    ax.set_ylabel("average accuracy over benchmarks (%)")
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    _legend(fig, [_arm_handle(a, line=False) for a in present], spare)
    return _finish(fig, caption, absent, note, path)


def routing_sweep(sweep: pd.DataFrame, arms: Sequence[str], path: str | Path | None = None, *, caption: str = "",
                  note: str = "") -> Figure:
    """Beyond the paper (docs/routing.md): each routed arm's accuracy and tokens generated per question against
    its threshold, a solid line on the tune set (where the threshold is chosen), dashed on the benchmarks; the
    threshold used is circled."""
    fig, (acc, tok), _ = _panels(2, ncols=2, size=(4.6, 3.3))
    present, absent = _present(arms, set(sweep["arm"]))
    handles = []
    for arm in present:
        rows = sweep[sweep["arm"] == arm]
        for split, df in rows.groupby("split", sort=False):
            style = "-" if split.startswith("tune") else "--"
            df = df.sort_values("threshold")
            for ax, col in ((acc, "accuracy"), (tok, "tokens_per_question")):
                ax.plot(df["threshold"], df[col], style, marker=arm_marker(arm), color=arm_colour(arm), ms=4)
                chosen = df[df["chosen"].astype(bool)]
                ax.plot(chosen["threshold"], chosen[col], "o", ms=11, mfc="none", mec="0.2")
            handles.append(Line2D([], [], ls=style, color=arm_colour(arm), marker=arm_marker(arm),
                                  label=f"{arm} ({rows['fast'].iloc[0]} / {rows['slow'].iloc[0]}"
                                        f"{', ' + rows['signal'].iloc[0] if 'signal' in rows.columns else ''}): {split}"))
    if not present:
        _empty(acc, "no routed arm in this study")
    signals = sorted(set(sweep["signal"])) if "signal" in sweep.columns and len(sweep) else ["agreement"]
    xlabel = f"threshold ({' or '.join(signals)} of the fast arm's samples)"  # docs/routing.md §1
    acc.set(xlabel=xlabel, ylabel="accuracy (%)")
    tok.set(xlabel=xlabel, ylabel="tokens generated per question")
    handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec="0.2", label="threshold used"))
    _legend(fig, handles)
    return _finish(fig, caption, absent, note, path)


# --------------------------------------------------------------------------- file entry points


def read_inputs(kind: str, inputs: Mapping[str, str | Sequence[str]]) -> dict:
    """The tables a figure of ``kind`` reads, from the paths of rule make_figure's named inputs."""
    if kind in ("level_gain", "easy_gap"):
        return {"gains": pd.read_csv(inputs["gains"])}
    if kind in ("length", "accuracy_length"):
        return {"levels": pd.read_csv(inputs["levels"])}
    if kind == "dynamics":
        paths = inputs.get("logs") or []
        paths = [paths] if isinstance(paths, str) else list(paths)
        return {"logs": {Path(p).name.removesuffix(".parquet"): pd.read_parquet(p) for p in paths}}
    if kind == "words":
        return {"words": pd.read_csv(inputs["words"])}
    if kind == "merging":
        return {"grid": pd.read_csv(inputs["grid"]) if inputs.get("grid") else None}
    if kind == "cost":
        return {"cost": pd.read_csv(inputs["cost"]), "levels": pd.read_csv(inputs["levels"])}
    if kind == "routing":
        return {"sweep": pd.read_csv(inputs["sweep"])}
    raise KeyError(f"unknown figure kind {kind!r}")


def draw(spec: Mapping, data: Mapping, path: str | Path | None = None) -> Figure:
    """Draw the figure described by ``spec`` (synergy.report.targets.figure_spec) from ``data`` (read_inputs)."""
    kind, arms = spec["kind"], spec.get("arms", [])
    common = {"caption": spec.get("caption", ""), "note": spec.get("note", "")}
    if kind == "level_gain":
        return level_gain(data["gains"], arms, path, reference=spec.get("reference"), benches=spec.get("benches"), **common)
    if kind == "length":
        return length_by_level(data["levels"], arms, path, benches=spec.get("benches"), **common)
    if kind == "accuracy_length":
        return accuracy_vs_length(data["levels"], arms, path, benches=spec.get("benches"), **common)
    if kind == "dynamics":
        return training_dynamics(data["logs"], arms, path, **common)
    if kind == "easy_gap":
        return easy_gap(data["gains"], arms, path, benches=spec.get("benches"), **common)
    if kind == "words":
        return reasoning_words(data["words"], arms, path, **common)
    if kind == "merging":
        return merging(data["grid"], path, benches=spec.get("benches"), **common)
    if kind == "cost":
        return cost_accuracy(data["cost"], data["levels"], arms, path, **common)
    if kind == "routing":
        return routing_sweep(data["sweep"], arms, path, **common)
    raise KeyError(f"unknown figure kind {kind!r}")
