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
    report_config,
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

REPORT = report_config(STUDY)
REPORT_CODE = [code_file(workflow.basedir, "synergy", "report", f) for f in ("figures.py", "study_tables.py")]


localrules:
    tabulate_level_gain,
    tabulate_reasoning_words,
    check_findings,
    make_figure,
    make_report,


rule tabulate_level_gain:
    input:
        evals=gain_inputs(STUDY),
        levels="results/{study}/difficulty/levels.parquet",
        code=code_file(workflow.basedir, "synergy", "analysis.py"),
    output:
        csv=table_csv("level_gain"),
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
    input:
        evals=word_inputs(STUDY),
        code=code_file(workflow.basedir, "synergy", "analysis.py"),
    output:
        csv=table_csv("table5_reasoning_words"),
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
        csv=table_csv(FINDINGS_TABLE),
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


rule make_figure:
    input:
        unpack(lambda wc: figure_inputs(STUDY, wc.figure)),
        code=REPORT_CODE,
    output:
        FIGURE_PATH,
    wildcard_constraints:
        figure="|".join(FIGURES),
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
    input:
        report_inputs(STUDY),
        code=[*REPORT_CODE, code_file(workflow.basedir, "synergy", "report", "pdf.py")],
    output:
        REPORT_PATH,
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
