"""What every job gets besides its inputs: the conda env, the vLLM settings of vLLM jobs, the environment."""

from __future__ import annotations

import os

from synergy.config import StudyConfig


def vllm_params(study: StudyConfig, backend: str) -> dict:
    """The ``vllm:`` section for a job whose generation backend is ``backend`` ({} for hf, so that a change of the
    vLLM settings never re-runs the jobs that do not use it)."""
    return dict(study.raw.get("vllm") or {}) if backend == "vllm" else {}


def conda_env(backend: str) -> str:
    """The conda env file (relative to rules/) of a job: envs/gpu.yaml (vLLM's torch) for the vllm backend, else
    envs/cpu.yaml (also right for GPU training: PyPI's torch wheel runs on CUDA). Used with ``--sdm conda``."""
    return "../envs/gpu.yaml" if backend == "vllm" else "../envs/cpu.yaml"


def job_environment(study: StudyConfig) -> dict[str, str]:
    """Environment every job of the study gets: ``SYNERGY_TRUST_REMOTE_CODE`` from ``base_model.trust_remote_code``,
    and ``SYNERGY_TRACKING`` / ``SYNERGY_TRACKING_DIR`` from ``tracking:`` (synergy/train/tracking.py: through the
    environment, so turning tracking on re-trains nothing).

    (The names are ``synergy.models.TRUST_REMOTE_CODE_ENV`` and ``synergy.train.tracking.TRACKING_ENV``; spelled out
    here so this module stays free of torch.)
    """
    from synergy.config import TrackingConfig

    tracking = TrackingConfig.from_dict(study.raw.get("tracking") or {}, "tracking")
    return {"SYNERGY_TRUST_REMOTE_CODE": "1" if study.base_model.trust_remote_code else "0",
            "SYNERGY_TRACKING": ",".join(tracking.backends),
            "SYNERGY_TRACKING_DIR": tracking.dir or f"logs/{study.name}/tracking"}


def export_job_environment(study: StudyConfig) -> None:
    """Put ``job_environment(study)`` into this process's environment, which the jobs it starts inherit."""
    os.environ.update(job_environment(study))
