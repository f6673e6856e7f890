"""Outside checkpoints in the workflow (``external:``, docs/scorecard.md): where each is read from, the arm
name its sampling seeds come from, its prompt, and what its scorecard reads.

Not a paper section: the paper evaluates only its own arms. An external arm is evaluated by rule evaluate
exactly as a study arm is (the study's ``evaluation:`` settings, benchmarks and sharding) and scored by rule
scorecard (rules/scorecard.smk) against the base model's levels. It trains nothing and enters no table,
figure or finding of the study, so adding one re-runs nothing (``external`` is not in the study's record).
"""

from __future__ import annotations

from synergy.config import StudyConfig
from synergy.data.loaders.hub import slug
from synergy.workflow.paths import EVAL_PATH, LEVELS_PATH

HUB_MODEL_DIR = "resources/models/{slug}"  # where rule download_model puts a hub model (rules/download.smk)
SCORECARD_PATTERNS = {ext: "results/{study}/scorecards/{arm}." + ext for ext in ("md", "csv", "pdf")}


def external_model_dir(study: StudyConfig, name: str) -> str:
    """The model folder of external arm ``name``: its ``path`` as given (read from the working directory when
    relative), or the download folder of its hub id at its revision."""
    ext = study.external(name)
    if ext is None:
        raise KeyError(f"no external arm named {name!r} (have {study.external_names})")
    return ext.path if ext.path is not None else HUB_MODEL_DIR.format(slug=slug(ext.hub, ext.revision))


def external_downloads(study: StudyConfig) -> list[dict]:
    """The hub external arms as ``model_downloads`` entries (rules/download.smk fetches each once)."""
    return [{"path": e.hub, "revision": e.revision} for e in study.externals if e.hub is not None]


def evaluated_arms(study: StudyConfig) -> list[str]:
    """Every arm rule evaluate samples: the study's arms with a model of their own and the external arms."""
    return [a.name for a in study.arms if a.kind != "routed"] + study.external_names


def eval_reasoning(study: StudyConfig, arm: str) -> bool:
    """Whether ``arm``'s evaluation prompt carries the reasoning instruction; an external arm without
    ``reasoning_instruction`` is prompted as the study's trained arms are (with it)."""
    ext = study.external(arm)
    if ext is None:
        return study.arm(arm).eval_reasoning
    return True if ext.reasoning_instruction is None else ext.reasoning_instruction


def seed_name(study: StudyConfig, arm: str) -> str:
    """The name ``arm``'s evaluation seeds derive from: its own, or the study arm an external's ``seeds_of`` names
    (a copy of a study arm evaluated with that arm's seeds samples exactly its answers)."""
    ext = study.external(arm)
    return ext.seeds_of if ext is not None and ext.seeds_of else arm


def trusts_remote_code(study: StudyConfig, arm: str) -> bool | None:
    """An external arm's own ``trust_remote_code``; None for a study arm, whose jobs take the study's setting from
    the job environment (synergy.workflow.jobs), so that changing it re-runs no evaluation."""
    ext = study.external(arm)
    return ext.trust_remote_code if ext is not None else None


def base_arm(study: StudyConfig) -> str | None:
    """The model gains are measured against: the study's first arm of kind base (None without one)."""
    return next((a.name for a in study.arms if a.kind == "base"), None)


def scorecard_arms(study: StudyConfig) -> list[str]:
    """The arms a scorecard can be made for: every study arm and every external arm."""
    return study.arm_names + study.external_names


def scorecard_inputs(study: StudyConfig, arm: str) -> dict[str, list[str] | str]:
    """What rule scorecard reads: the evaluations of ``arm``, of the base model and of every study arm (the
    closest-profile ranking compares with each), and the base model's levels."""
    arms = [arm] + [a for a in study.arm_names if a != arm]
    return {"evals": [EVAL_PATH.format(study=study.name, arm=a, bench=b) for a in arms for b in study.bench_names],
            "levels": LEVELS_PATH.format(study=study.name)}


def scorecard_facts(study: StudyConfig, arm: str) -> dict[str, str]:
    """The lines at the top of ``arm``'s scorecard: what was scored, how it was prompted and sampled."""
    ext = study.external(arm)
    if ext is None:
        model = f"study arm {arm} ({study.arm(arm).kind}) of study {study.name}"
    else:
        model = ext.path if ext.path is not None else f"{ext.hub} (hub, revision {ext.revision or 'main'})"
    n = study.evaluation.num_samples if study.evaluation is not None else None
    return {
        "model": model,
        "prompt": "with the reasoning instruction" if eval_reasoning(study, arm) else "without the reasoning instruction",
        "sampling seeds": f"those of study arm {seed_name(study, arm)}" if seed_name(study, arm) != arm else "its own",
        "samples per question": str(n),
        "levels and gains": f"the base model ({base_arm(study) or 'none'}) of study {study.name}",
        "benchmarks": ", ".join(study.bench_names),
    }
