"""Inputs and params of rule check_findings (docs/findings.md): which arm plays each role of the paper's
claims, the merge sweep of Fig. 14, and the files the check reads. Pure helpers of rules/report.smk;
never imports snakemake or torch."""

from __future__ import annotations

from dataclasses import fields

from synergy.config import StudyConfig
from synergy.findings.settings import FindingRoles, FindingsConfig
from synergy.workflow import EVAL_PATH, FINDINGS_TABLE, LEVELS_PATH, TRAIN_LOG, arms_of_kind

__all__ = ["FINDINGS_TABLE", "entropy_arms", "findings_config", "findings_inputs", "findings_params", "findings_roles",
           "merge_sweep"]


def findings_config(study: StudyConfig) -> FindingsConfig:
    return FindingsConfig.from_dict(study.raw.get("findings") or {}, "findings")


def findings_roles(study: StudyConfig) -> dict[str, str]:
    """{role: arm} for the roles whose configured arm the study has (a missing one makes its claims not measurable)."""
    roles = findings_config(study).roles
    have = set(study.arm_names)
    return {f.name: getattr(roles, f.name) for f in fields(FindingRoles)
            if f.name != "merge_method" and getattr(roles, f.name) in have}


def merge_sweep(study: StudyConfig) -> list[tuple[float, str]]:
    """(SFT ratio, arm) of the Fig. 14 method's sweep, endpoints included (the parents when ``endpoints: parents``)."""
    mc = study.merging
    method = findings_config(study).roles.merge_method
    if mc is None or method not in mc.methods:
        return []
    have = set(study.arm_names)
    return [(float(r), arm) for m, r, arm in mc.grid() if m == method and arm in have]


def entropy_arms(study: StudyConfig) -> list[str]:
    """The GRPO arms whose training logs give F8's entropies (rl and rl_nokl, when both are GRPO arms)."""
    roles = findings_roles(study)
    grpo = set(arms_of_kind(study, "grpo"))
    arms = [roles.get("rl"), roles.get("rl_nokl")]
    return [a for a in arms if a in grpo] if all(a in grpo for a in arms) else []


def findings_inputs(study: StudyConfig) -> dict[str, list[str] | str]:
    arms = list(dict.fromkeys([*findings_roles(study).values(), *(a for _, a in merge_sweep(study))]))
    return {"evals": [EVAL_PATH.format(study=study.name, arm=a, bench=b) for a in arms for b in study.bench_names],
            "levels": LEVELS_PATH.format(study=study.name),
            "logs": [TRAIN_LOG.format(study=study.name, arm=a) for a in entropy_arms(study)]}


def findings_params(study: StudyConfig) -> dict:
    cfg = findings_config(study)
    return {"roles": findings_roles(study), "merge_sweep": [list(x) for x in merge_sweep(study)],
            "settings": {k: v for k, v in cfg.to_dict().items() if k != "roles"},
            "entropy_arms": entropy_arms(study)}
