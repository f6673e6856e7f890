"""Figures and the report of a study: names, captions, arms, input files and targets (paper §2–3 figures).

Pure helpers of rules/report.smk (config -> paths and params) on top of synergy/workflow/, which owns the
paths, the figure catalogue (``FIGURES``: names, captions, default arms) and the targets; never imports
snakemake or torch. The figures follow the paper's numbering (docs/paper.md §9); where the paper draws
one figure for two purposes (Fig. 1 / 6 per-level gains, Fig. 2 / 8 response lengths) we draw two, so
that no panel carries more than about eight arms. Fig. 7 (token-level KL heat-map) and Fig. 9 (a diagram)
are not drawn.

Each figure names the arms it shows (``report.figures`` in the study config overrides the defaults
of ``FIGURES``). An arm the study does not have is not an input; the figure draws the arms it has and names
the absent ones, so a smaller study config (config/smoke.yaml) still gets every figure.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synergy.analysis import REASONING_WORDS
from synergy.config import ConfigError, StudyConfig, _Section
from synergy.workflow import (
    COST_TABLE,
    EVAL_PATH,
    FIGURE_PATH,
    FIGURES,
    GAIN_TABLE,
    REPORT_PATH,
    REPORT_TABLES,
    ROUTING_TABLE,
    SYNERGY,
    TRAIN_LOG,
    WORDS_TABLE,
    FigureDef,
    arms_of_kind,
    base_arm,
    figure_targets,
    has_routed,
    study_figures,
    table_csv,
    table_md,
    table_names,
)

__all__ = ["APPENDIX", "FIGURES", "FIGURE_PATH", "GAIN_TABLE", "REPORT_ORDER", "REPORT_PATH", "REPORT_TABLES", "SYNERGY",
           "WORDS_TABLE", "BootstrapSettings", "FigureDef", "ReportConfig", "WordSettings", "base_arm", "code_file",
           "config_hash", "figure_arms", "figure_inputs", "figure_spec", "figure_targets", "gain_inputs", "gain_pairs",
           "present_arms", "report_config", "report_inputs", "report_items", "report_tables", "table_csv", "table_md",
           "title_info", "word_arms", "word_benches", "word_inputs"]

# Tables and figures in the paper's order; tables of the study not listed here go before the appendix.
# Categories of Snakemake's report (`snakemake --report`): the paper section each table and figure belongs to.
SECTION_2 = "§2 SFT and RL, level by level"
SECTION_3 = "§3 Combining SFT and RL"
REPORT_SECTIONS = {
    **{n: SECTION_2 for n in ("level_counts", "table1_sft_data", "table2_kl", "table3_easy", "level_accuracy",
                             "level_gain", "table5_reasoning_words", "fig1_level_gain", "fig2_length",
                             "fig3_accuracy_length", "fig4_kl_dynamics", "fig5_easy_gap", "fig6_level_gain_sft_rl",
                             "fig8_length_levels", "fig10_reasoning_words")},
    **{n: SECTION_3 for n in ("table6_synergy", "table7_length", "merge_grid", "fig11_twostage_dynamics",
                             "fig12_interleaved_dynamics", "fig13_progressive_dynamics", "fig14_merging")},
    "findings": "Findings: the paper's claims on this study",
    "judge_effect": "§2.4 Evaluation: the LLM judge",
    "cost": "Cost: what each arm took", "cost_accuracy": "Cost: what each arm took",
    ROUTING_TABLE: "Beyond the paper: routing by difficulty", "routing_sweep": "Beyond the paper: routing by difficulty",
}


def report_section(name: str) -> str:
    """The category of a table or figure in Snakemake's report (its paper section)."""
    return REPORT_SECTIONS.get(name, "Other tables")


def report_caption(name: str) -> str:
    """A table's caption in Snakemake's report: its title in all.pdf."""
    from synergy.report.tables import TITLES

    extra = {"level_counts": "Questions per benchmark and difficulty level (paper §2.3)",
             "level_gain": "Accuracy gain (points) over the reference arm by benchmark and level, 95% bootstrap "
                           "intervals (Fig. 1, 5, 6)",
             "table5_reasoning_words": "Table 5: reasoning words in the answers (count and per 1,000 responses)",
             "findings": "The paper's claims F1-F14 on this study: statistic, 95% interval, the paper's value, verdict",
             "judge_effect": "Accuracy with and without the LLM judge",
             ROUTING_TABLE: "Routed arms at each threshold: accuracy (%), tokens generated per question, share of "
                            "questions answered by the slow arm, on the held-out tune set and on the benchmarks; "
                            "chosen: the threshold used (docs/routing.md)",
             "cost": "Cost of every arm end to end: wall seconds by stage, CPU seconds, peak memory (MB), GPU-hours "
                     "and where each number came from (docs/cost.md)"}
    return TITLES.get(name) or extra.get(name) or name


REPORT_ORDER: tuple[tuple[str, str], ...] = (
    ("table", "findings"),        # right after the title page: which of the paper's claims this study shows
    ("table", "level_counts"),
    ("figure", "fig1_level_gain"),
    ("table", "table1_sft_data"),
    ("figure", "fig2_length"),
    ("figure", "fig3_accuracy_length"),
    ("table", "table2_kl"),
    ("figure", "fig4_kl_dynamics"),
    ("table", "table3_easy"),
    ("figure", "fig5_easy_gap"),
    ("figure", "fig6_level_gain_sft_rl"),
    ("table", WORDS_TABLE),
    ("figure", "fig8_length_levels"),
    ("figure", "fig10_reasoning_words"),
    ("table", "table6_synergy"),
    ("figure", "fig11_twostage_dynamics"),
    ("figure", "fig12_interleaved_dynamics"),
    ("figure", "fig13_progressive_dynamics"),
    ("table", "table7_length"),
    ("figure", "fig14_merging"),
    ("table", "merge_grid"),
    ("table", "cost"),
    ("figure", "cost_accuracy"),
    ("table", ROUTING_TABLE),     # only in a study with a routed arm
    ("figure", "routing_sweep"),
)
APPENDIX = ("level_accuracy", GAIN_TABLE)


# --------------------------------------------------------------------------- the `report:` config section


@dataclass(frozen=True)
class BootstrapSettings(_Section):
    resamples: int = 2000        # bootstrap means per interval
    confidence: float = 0.95     # two-sided percentile interval
    seed: int = 0


@dataclass(frozen=True)
class WordSettings(_Section):
    words: tuple[str, ...] = REASONING_WORDS   # paper Table 5's five + "hmm", "verify" (Fig. 7)
    benches: tuple[str, ...] = ()              # benchmarks counted (paper: MathVision); () = every benchmark


@dataclass(frozen=True)
class ReportConfig(_Section):
    """``report:`` of a study config (optional; these defaults apply without it)."""

    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    reasoning_words: WordSettings = field(default_factory=WordSettings)
    figures: Any = None          # {figure: [arms]}: overrides of FIGURES' default arms

    def __post_init__(self):
        figs = dict(self.figures or {})
        unknown = sorted(set(figs) - set(FIGURES))
        if unknown:
            raise ConfigError(f"config key 'report.figures': unknown figures {unknown} (known: {list(FIGURES)})")
        for name, arms in figs.items():
            if FIGURES[name].kind == "easy_gap" and len(arms) != 2:
                raise ConfigError(f"config key 'report.figures.{name}': needs exactly two arms (with, without the "
                                  f"easiest questions), got {list(arms)}")
        if not 0 < self.bootstrap.confidence < 1:
            raise ConfigError(f"config key 'report.bootstrap.confidence': must be in (0, 1), got {self.bootstrap.confidence}")


def report_config(study: StudyConfig) -> ReportConfig:
    return ReportConfig.from_dict(study.raw.get("report") or {}, "report")


# --------------------------------------------------------------------------- arms and inputs of each figure


def figure_arms(study: StudyConfig, figure: str) -> list[str]:
    """The arms a figure asks for (config override or the paper's), whether or not the study has them."""
    figs = report_config(study).figures or {}
    if FIGURES[figure].kind == "cost" and not figs.get(figure):
        return study.arm_names  # none named: every arm of the study
    if FIGURES[figure].kind == "routing" and not figs.get(figure):
        return arms_of_kind(study, "routed")
    return list(figs.get(figure, FIGURES[figure].arms))


def present_arms(study: StudyConfig, figure: str) -> list[str]:
    """The requested arms the study has (for dynamics: those trained by GRPO, which log its metrics)."""
    have = set(arms_of_kind(study, "grpo")) if FIGURES[figure].kind == "dynamics" else set(study.arm_names)
    return [a for a in figure_arms(study, figure) if a in have]


def gain_pairs(study: StudyConfig) -> list[tuple[str, str]]:
    """(arm, reference) pairs of the level_gain table: every arm of a gain figure against the base model,
    and the two arms of the easy-question figure."""
    base, pairs = base_arm(study), []
    for name, fig in FIGURES.items():
        arms = present_arms(study, name)
        if fig.kind == "level_gain" and base is not None:
            pairs += [(a, base) for a in arms if a != base]
        elif fig.kind == "easy_gap" and len(arms) == 2:
            pairs.append((arms[0], arms[1]))
    return list(dict.fromkeys(pairs))


def word_arms(study: StudyConfig) -> list[str]:
    """Arms of Table 5: those of every words figure the study has."""
    return list(dict.fromkeys(a for n, f in FIGURES.items() if f.kind == "words" for a in present_arms(study, n)))


def word_benches(study: StudyConfig) -> tuple[list[str], str]:
    """Benchmarks whose responses are counted, and a note when the configured ones are not in the study."""
    wanted = list(report_config(study).reasoning_words.benches)
    have = [b for b in wanted if b in study.bench_names]
    if not wanted:
        return study.bench_names, ""
    if not have:
        return study.bench_names, f"configured benchmarks {wanted} are not in this study; counted on every benchmark"
    return have, ""


def gain_inputs(study: StudyConfig) -> list[str]:
    arms = list(dict.fromkeys(a for pair in gain_pairs(study) for a in pair))
    return [EVAL_PATH.format(study=study.name, arm=a, bench=b) for a in arms for b in study.bench_names]


def word_inputs(study: StudyConfig) -> list[str]:
    benches, _ = word_benches(study)
    return [EVAL_PATH.format(study=study.name, arm=a, bench=b) for a in word_arms(study) for b in benches]


def figure_inputs(study: StudyConfig, figure: str) -> dict[str, Any]:
    """Named input files of one figure (rule make_figure): tables, or the GRPO arms' training logs."""
    kind = FIGURES[figure].kind
    if kind in ("level_gain", "easy_gap"):
        return {"gains": table_csv(GAIN_TABLE, study.name)}
    if kind in ("length", "accuracy_length"):
        return {"levels": table_csv("level_accuracy", study.name)}
    if kind == "dynamics":
        return {"logs": [TRAIN_LOG.format(study=study.name, arm=a) for a in present_arms(study, figure)]}
    if kind == "words":
        return {"words": table_csv(WORDS_TABLE, study.name)}
    if kind == "merging":
        return {"grid": table_csv("merge_grid", study.name)} if "merge_grid" in table_names(study) else {}
    if kind == "cost":
        return {"cost": table_csv(COST_TABLE, study.name), "levels": table_csv("level_accuracy", study.name)}
    if kind == "routing":
        return {"sweep": table_csv(ROUTING_TABLE, study.name)}
    raise KeyError(f"figure {figure!r} has an unknown kind {kind!r}")


def figure_spec(study: StudyConfig, figure: str) -> dict:
    """Everything a figure function needs besides its tables (params of rule make_figure)."""
    fig = FIGURES[figure]
    spec = {"name": figure, "kind": fig.kind, "caption": fig.caption, "arms": figure_arms(study, figure),
            "benches": study.bench_names, "reference": base_arm(study), "note": ""}
    absent_kind = [a for a in figure_arms(study, figure) if a in study.arm_names and a not in present_arms(study, figure)]
    if absent_kind:
        spec["note"] = f"not trained by GRPO (no training dynamics): {', '.join(absent_kind)}"
    if fig.kind == "merging" and "merge_grid" not in table_names(study):
        spec["note"] = "this study config has no `merging:` section, so there is no merge grid"
    return spec


# --------------------------------------------------------------------------- the report


def report_tables(study: StudyConfig) -> list[str]:
    """Every table of the study in report order (the level counts, the arm tables, the report's own)."""
    if not study.arms:
        return []
    have = ["level_counts", *table_names(study), *REPORT_TABLES, *([ROUTING_TABLE] if has_routed(study) else [])]
    ordered = [n for t, n in REPORT_ORDER if t == "table" and n in have]
    extra = [n for n in have if n not in ordered and n not in APPENDIX]
    return ordered + extra + [n for n in APPENDIX if n in have]


def report_items(study: StudyConfig) -> list[dict]:
    """The report's pages after the title, in the paper's order: tables (csv + md) and figures (spec + inputs)."""
    if not study.arms:
        return []
    tables = report_tables(study)
    items = []
    for kind, name in REPORT_ORDER:
        if kind == "figure" and name in study_figures(study):
            items.append({"type": "figure", "name": name, "spec": figure_spec(study, name),
                          "inputs": figure_inputs(study, name)})
        elif name in tables:
            items.append({"type": "table", "name": name, "csv": table_csv(name, study.name), "md": table_md(name, study.name)})
    placed = {i["name"] for i in items}
    tail = [n for n in tables if n not in placed]
    items += [{"type": "table", "name": n, "csv": table_csv(n, study.name), "md": table_md(n, study.name)} for n in tail]
    return items


def report_inputs(study: StudyConfig) -> list[str]:
    """Every file the report reads, and the figure PDFs (so that building all.pdf builds every figure)."""
    paths = []
    for item in report_items(study):
        if item["type"] == "table":
            paths += [item["csv"], item["md"]]
        else:
            paths.append(FIGURE_PATH.format(study=study.name, figure=item["name"]))
            for v in item["inputs"].values():
                paths += v if isinstance(v, list) else [v]
    return list(dict.fromkeys(paths))


def code_file(basedir: str, *parts: str) -> str:
    """A module of the checkout as a rule input, relative to the working directory: Snakemake skips the
    modification-time check of absolute paths into the workflow's own source tree, and a changed figure
    module must re-run its figure rules."""
    return os.path.relpath(os.path.join(basedir, *parts))


def config_hash(config: Mapping) -> str:
    """A short, stable hash of the whole study config (shown on the title page)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def title_info(study: StudyConfig, config: Mapping) -> dict:
    """Title-page facts that come from the config (the date and code version are added when the report is built)."""
    bm = study.base_model
    model = bm.path if bm.source == "hf" else "tiny Qwen2.5-VL built and pretrained in the workflow"
    return {"study": study.name, "base_model": model, "benchmarks": study.bench_names, "arms": study.arm_names,
            "config_hash": config_hash(config)}
