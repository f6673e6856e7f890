"""What the study builds: its tables and figures, and the default target (paper Tables 1-7, Figures 1-14).

``final_targets`` is what ``snakemake`` builds with no target; ``FIGURES`` names every figure of the
report (synergy/report/ draws them and lays out the report).
"""

from __future__ import annotations

from dataclasses import dataclass

from synergy.config import StudyConfig
from synergy.workflow.paths import FIGURE_PATH, REPORT_PATH, TABLE_PATH, level_table_paths, table_csv, table_md

ARM_TABLES = ("table1_sft_data", "table2_kl", "table3_easy", "table6_synergy", "table7_length")
GAIN_TABLE = "level_gain"                  # per-level gains with bootstrap intervals (Fig. 1 / 5 / 6)
WORDS_TABLE = "table5_reasoning_words"     # paper Table 5 (every arm of Fig. 10)
FINDINGS_TABLE = "findings"                # the paper's claims, each with a verdict (docs/findings.md)
COST_TABLE = "cost"                        # what each arm cost end to end (docs/cost.md; synergy/workflow/cost.py)
ROUTING_TABLE = "routing_sweep"            # a routed arm's accuracy and cost at each threshold (docs/routing.md §3)
REPORT_TABLES = (GAIN_TABLE, WORDS_TABLE, FINDINGS_TABLE, COST_TABLE)  # built by rules/report.smk (the rest: rules/evaluate.smk)

SYNERGY = ("sft-eureka", "rl", "twostage", "interleaved", "progressive", "mixing", "merge-linear-0.25")


@dataclass(frozen=True)
class FigureDef:
    kind: str                 # which function of synergy.report.figures draws it
    caption: str              # one line: what the figure shows
    arms: tuple[str, ...]     # default arms (the paper's arm names)


FIGURES: dict[str, FigureDef] = {
    "fig1_level_gain": FigureDef(
        "level_gain", "Fig. 1: accuracy gain over the base model by difficulty level, SFT, RL and their combinations "
        "(bars: 95% bootstrap intervals over questions)", SYNERGY),
    "fig2_length": FigureDef(
        "length", "Fig. 2: mean response length by difficulty level, base model, SFT on each long-CoT set and RL",
        ("base", "sft-s1-gemini", "sft-s1.1-r1", "sft-eureka", "rl")),
    "fig3_accuracy_length": FigureDef(
        "accuracy_length", "Fig. 3: accuracy against mean response length, one point per arm, per benchmark and on average",
        ("base", "sft-s1-gemini", "sft-s1.1-r1", "sft-eureka", "rl", "mixing")),
    "fig4_kl_dynamics": FigureDef(
        "dynamics", "Fig. 4: GRPO training with and without the KL loss: reward, entropy, response length, clip ratio",
        ("rl", "rl-nokl")),
    "fig5_easy_gap": FigureDef(
        "easy_gap", "Fig. 5: accuracy gap of RL with minus without the easiest questions, by difficulty level "
        "(bars: 95% bootstrap intervals)", ("rl", "rl-noeasy")),
    "fig6_level_gain_sft_rl": FigureDef(
        "level_gain", "Fig. 6: accuracy gain over the base model by difficulty level, every SFT and RL arm "
        "(bars: 95% bootstrap intervals over questions)",
        ("sft-s1-gemini", "sft-s1.1-r1", "sft-eureka", "rl", "rl-nokl", "rl-noeasy")),
    "fig8_length_levels": FigureDef(
        "length", "Fig. 8: mean response length by difficulty level, base model, SFT, RL and their combinations",
        ("base", *SYNERGY)),
    "fig10_reasoning_words": FigureDef(
        "words", "Fig. 10: reasoning words per 1,000 responses by arm (Table 5)",
        ("base", "sft-s1-gemini", "sft-s1.1-r1", *SYNERGY)),
    "fig11_twostage_dynamics": FigureDef(
        "dynamics", "Fig. 11: GRPO from the SFT model (two-stage) against GRPO from the base model", ("rl", "twostage")),
    "fig12_interleaved_dynamics": FigureDef(
        "dynamics", "Fig. 12: interleaved SFT & RL (SFT loss on zero-pass questions) against GRPO", ("rl", "interleaved")),
    "fig13_progressive_dynamics": FigureDef(
        "dynamics", "Fig. 13: progressive SFT & RL (fading trace prefix on zero-pass questions) against GRPO",
        ("rl", "progressive")),
    "fig14_merging": FigureDef(
        "merging", "Fig. 14: model merging: accuracy gain over the base model against the SFT model's weight, per method",
        ()),
    "cost_accuracy": FigureDef(
        "cost", "Average accuracy against what each arm's training took (its own training and what it builds on; "
        "docs/cost.md)", ()),
    "routing_sweep": FigureDef(
        "routing", "Routed arms: accuracy and tokens generated per question against the routing threshold, on the "
        "held-out tune set (where the threshold is chosen) and on the benchmarks (docs/routing.md)", ()),
}


def has_routed(study: StudyConfig) -> bool:
    return any(a.kind == "routed" for a in study.arms)


def study_figures(study: StudyConfig) -> list[str]:
    """The figures a study draws: every one, but the routing sweep only when the study has a routed arm."""
    return [f for f, d in FIGURES.items() if d.kind != "routing" or has_routed(study)]


def merge_grid_arms(study: StudyConfig) -> list[str]:
    """Arms the merge grid reads: the base model, the two parents and every merged arm."""
    m = study.merging
    if m is None:
        return []
    names = ["base", m.rl_arm, m.sft_arm, *(arm for _, _, arm in m.grid())]
    base = [a.name for a in study.arms if a.kind == "base"][:1]
    return list(dict.fromkeys(base + [n for n in names if n in study.arm_names]))


def merge_cells(study: StudyConfig) -> list[dict]:
    """The merge grid's cells: method, SFT ratio and the arm whose evaluations fill it."""
    if study.merging is None:
        return []
    return [{"method": m, "sft_ratio": float(r), "arm": a} for m, r, a in study.merging.grid()]


def table_arms(study: StudyConfig, table: str) -> list[str]:
    """The arms a table shows: those the config lists for it; level_accuracy shows every arm."""
    if table == "level_accuracy":
        return study.arm_names
    if table == "merge_grid":
        return merge_grid_arms(study)
    return list(study.tables[table])


def table_arm_specs(study: StudyConfig, table: str) -> list[dict]:
    """The arms a table job reads about (params of rule tabulate_arms): name, kind and train set of the table's
    arms and of the base arm, in study order; not their training settings, which change no table cell."""
    wanted = set(table_arms(study, table)) | {a.name for a in study.arms if a.kind == "base"}
    return [{"name": a.name, "kind": a.kind, "train_set": a.train_set} for a in study.arms if a.name in wanted]


def table_train_sets(study: StudyConfig, table: str) -> list[dict]:
    """Table 1's Modality and Data columns: name, modality and size of its arms' train sets ([] for other tables)."""
    if table != "table1_sft_data":
        return []
    used = {a["train_set"] for a in table_arm_specs(study, table)}
    return [{"name": t.name, "modality": t.modality, "num_questions": t.num_questions}
            for t in study.train_sets if t.name in used]


def table_names(study: StudyConfig) -> list[str]:
    if not study.arms:
        return []
    return [*study.tables, *(["merge_grid"] if study.merging is not None else []), "level_accuracy"]


def figure_targets(study: StudyConfig) -> list[str]:
    """The report's targets for ``final_targets``: every figure, Table 5 and results/<study>/figures/all.pdf."""
    if not study.arms:
        return []
    tables = [WORDS_TABLE, FINDINGS_TABLE, COST_TABLE, *([ROUTING_TABLE] if has_routed(study) else [])]
    return ([FIGURE_PATH.format(study=study.name, figure=f) for f in study_figures(study)]
            + [path for t in tables for path in (table_csv(t, study.name), table_md(t, study.name))]
            + [REPORT_PATH.format(study=study.name)])


def final_targets(study: StudyConfig) -> list[str]:
    """What ``snakemake`` builds with no target: every table, every figure and results/<study>/figures/all.pdf."""
    tables = [TABLE_PATH.format(study=study.name, table=t) for t in table_names(study)]
    return level_table_paths(study.name) + tables + figure_targets(study)
