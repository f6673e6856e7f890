# Figures, Table 5 and the one report: results/<study>/figures/{figure}.pdf and results/<study>/figures/all.pdf
# (paper §2-3 figures; synergy/report/). Local rules that read CSV / parquet only (never torch).
# Each figure rule depends on the tables and training logs it reads and on the drawing code, so a
# change of a figure's code or style re-runs only these rules, never training or evaluation.
from synergy.report.targets import (
    code_file,
    FIGURES,
    FIGURE_PATH,
    REPORT_PATH,
    figure_inputs,
    figure_spec,
    gain_inputs,
    gain_pairs,
    SECTION_2,
    report_caption,
    report_config,
    report_section,
    report_inputs,
    report_items,
    table_csv,
    table_md,
    title_info,
    word_arms,
    word_benches,
    word_inputs,
)

from synergy.report.findings_targets import FINDINGS_TABLE, findings_inputs, findings_params
from synergy.workflow import COST_TABLE, ROUTING_TABLE, cost_graph, cost_inputs, has_routed, routing_files, study_figures

REPORT = report_config(STUDY)
REPORT_CODE = [code_file(workflow.basedir, "synergy", "report", f) for f in ("figures.py", "plotting.py", "study_tables.py", "cost.py")]


localrules:
    tabulate_level_gain,
    tabulate_reasoning_words,
    check_findings,
    tabulate_cost,  # on the submitting host, where sacct answers (docs/cost.md §3)
    make_figure,
    make_report,


rule tabulate_level_gain:
    """Accuracy gain of each arm over its reference per benchmark and level, with bootstrap intervals (Fig. 1, 5, 6)."""
    input:
        evals=gain_inputs(STUDY),
        levels="results/{study}/difficulty/levels.parquet",
        code=code_file(workflow.basedir, "synergy", "analysis.py"),
    output:
        csv=report(table_csv("level_gain"), caption="../report/level_gain.rst", category=SECTION_2,
                   labels={"table": "level_gain"}),
        md=table_md("level_gain"),
    params:
        pairs=gain_pairs(STUDY),
        bootstrap=REPORT.bootstrap.to_dict(),
    resources:
        **res("tabulate_level_gain"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/tabulate_level_gain/level_gain.log",
    benchmark:
        "results/{study}/benchmarks/tabulate_level_gain/level_gain.tsv"
    script:
        "../scripts/make_level_gain.py"


rule tabulate_reasoning_words:
    """Table 5: reasoning-word counts in the answers of the base, SFT and RL arms."""
    input:
        evals=word_inputs(STUDY),
        code=code_file(workflow.basedir, "synergy", "analysis.py"),
    output:
        csv=report(table_csv("table5_reasoning_words"), caption="../report/table5_reasoning_words.rst",
                   category=SECTION_2, labels={"table": "table5_reasoning_words"}),
        md=table_md("table5_reasoning_words"),
    params:
        arms=word_arms(STUDY),
        words=list(REPORT.reasoning_words.words),
        benches=word_benches(STUDY)[0],
        note=word_benches(STUDY)[1],
    resources:
        **res("tabulate_reasoning_words"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/tabulate_reasoning_words/table5_reasoning_words.log",
    benchmark:
        "results/{study}/benchmarks/tabulate_reasoning_words/table5_reasoning_words.tsv"
    script:
        "../scripts/make_words_table.py"


rule check_findings:
    """The paper's claims F1-F14: statistic, 95% paired bootstrap interval, the paper's value and a verdict."""
    input:
        **findings_inputs(STUDY),
        code=[code_file(workflow.basedir, "synergy", "findings", f) for f in ("check.py", "frame.py", "verdict.py")],
    output:
        csv=report(table_csv(FINDINGS_TABLE), caption="../report/findings.rst",
                   category=report_section(FINDINGS_TABLE), labels={"table": FINDINGS_TABLE}),
        md=table_md(FINDINGS_TABLE),
    params:
        **findings_params(STUDY),
        bootstrap=REPORT.bootstrap.to_dict(),
        words=list(REPORT.reasoning_words.words),
    resources:
        **res("check_findings"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/check_findings/findings.log",
    benchmark:
        "results/{study}/benchmarks/check_findings/findings.tsv"
    script:
        "../scripts/check_findings.py"


if has_routed(STUDY):

    localrules:
        tabulate_routing,

    rule tabulate_routing:
        """Routed arms at each threshold: accuracy, tokens per question, share to the slow arm, on the tune set
        (where the threshold is chosen) and on the benchmarks (beyond the paper; docs/routing.md)."""
        input:
            [f for files in routing_files(STUDY).values() for v in files.values() for f in (v if isinstance(v, list) else [v])],
            code=code_file(workflow.basedir, "synergy", "routing.py"),
        output:
            csv=report(table_csv(ROUTING_TABLE), caption="../report/table.rst", category=report_section(ROUTING_TABLE),
                       labels={"table": ROUTING_TABLE}),
            md=table_md(ROUTING_TABLE),
        params:
            routing={a: routing_params(STUDY, a) for a in arms_of_kind(STUDY, "routed")},
            files=routing_files(STUDY),
            title=report_caption(ROUTING_TABLE),
        resources:
            **res("tabulate_routing"),
        conda:
            "../envs/cpu.yaml"
        log:
            "logs/{study}/tabulate_routing/routing_sweep.log",
        benchmark:
            "results/{study}/benchmarks/tabulate_routing/routing_sweep.tsv"
        script:
            "../scripts/tabulate_routing.py"


rule make_figure:
    """One figure of the paper (Fig. 1-14) from the study's tables and training logs."""
    input:
        unpack(lambda wc: figure_inputs(STUDY, wc.figure)),
        code=REPORT_CODE,
    output:
        report(FIGURE_PATH, caption="../report/figure.rst", category=lambda wc: report_section(wc.figure),
               labels=lambda wc: {"figure": wc.figure}),
    wildcard_constraints:
        figure="|".join(study_figures(STUDY)),
    params:
        spec=lambda wc: figure_spec(STUDY, wc.figure),
    resources:
        **res("make_figure"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/make_figure/{figure}.log",
    benchmark:
        "results/{study}/benchmarks/make_figure/{figure}.tsv"
    script:
        "../scripts/make_figure.py"


rule make_report:
    """results/<study>/figures/all.pdf: title page, findings, every table and figure with its caption."""
    input:
        report_inputs(STUDY),
        code=[*REPORT_CODE, code_file(workflow.basedir, "synergy", "report", "pdf.py")],
    output:
        report(REPORT_PATH, caption="../report/all.rst", category="Report: all.pdf", labels={"file": "all.pdf"}),
    params:
        info=title_info(STUDY, config),
        pages=report_items(STUDY),
    resources:
        **res("make_report"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/make_report/all.log",
    benchmark:
        "results/{study}/benchmarks/make_report/all.tsv"
    script:
        "../scripts/make_report.py"


rule tabulate_cost:
    """What each arm took end to end (own training, what it builds on, evaluation, shared stages): docs/cost.md."""
    input:
        jobs=cost_inputs(STUDY),
        code=code_file(workflow.basedir, "synergy", "report", "cost.py"),
    output:
        csv=report(table_csv(COST_TABLE), caption="../report/cost.rst", category=report_section(COST_TABLE),
                   labels={"table": COST_TABLE}),
        md=table_md(COST_TABLE),
    params:
        graph=cost_graph(STUDY),
    resources:
        **res("tabulate_cost"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/tabulate_cost/cost.log",
    benchmark:
        "results/{study}/benchmarks/tabulate_cost/cost.tsv"
    script:
        "../scripts/tabulate_cost.py"
