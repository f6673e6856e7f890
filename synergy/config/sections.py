"""Sections of the data, the base model, generation and evaluation (paper §2.3, §2.4): sets, model, sampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synergy.config.base import LEVELS, ConfigError, _check_backend, _Section


@dataclass(frozen=True)
class SyntheticConfig(_Section):
    """Generator settings of the embedded suite (synergy/data/suite.py)."""

    seed: int
    image_size: int
    max_objects: int


@dataclass(frozen=True)
class SetSpec(_Section):
    """One benchmark or training set: where it comes from and how it is built."""

    name: str
    loader: str
    num_questions: int | None = None
    templates: Any = "all"          # {template: weight} or "all"
    style: str = "none"
    modality: str = "image"
    error_rate: float = 0.2
    reasoning_share: float = 1.0
    scene_view: str = "objects"         # long-CoT traces describe the picture object by object, or by group counts
    text_share: float = 0.0             # modality image: share of rows drawn text-only (docs/embedded-study.md §3)
    survey_share: float = 0.0           # image, short: share of picture rows asking for the group counts (§6)
    # real datasets (synergy/data/loaders/; loader != synthetic)
    source: str | None = None           # hub id, fetched into resources/datasets/ by rule download_dataset
    local_path: str | None = None       # a local copy in the repository's layout; replaces the download
    revision: str | None = None         # hub revision (branch, tag or commit) to pin
    split: str | None = None            # the split to read (default: the loader's, e.g. MathVision test)
    files: tuple[str, ...] | None = None  # globs of the data files (default: the loader's layout for the split)
    where: Any = None                   # {column: [values]}: keep only matching rows (e.g. MathVerse versions)
    subsets: tuple[str, ...] | None = None  # MMMU: subject folders to read (default: all)
    columns: Any = None                 # Eureka-Distill: {role: column} where auto-detection fails
    trace: str | None = None            # s1K: gemini or deepseek trace columns
    levels: str = "measured"            # measured (base model, paper §2.3) or paper (the tag of the paper's copies)
    level_column: str | None = None     # levels: paper: the column holding the tag
    level_format: str = "level"         # level (1-5 / L1-L5) or passes (correct runs of 16)
    on_bad_row: str = "raise"           # raise, or skip (counted and listed in the rule's log)


@dataclass(frozen=True)
class TinyModelSettings(_Section):
    """Architecture of the tiny Qwen2.5-VL (synergy.tiny_model.TinyModelConfig adds the image size)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    vision_depth: int = 2
    vision_hidden_size: int = 128
    vision_heads: int = 4
    vision_intermediate_size: int = 256
    max_position_embeddings: int = 4096
    initializer_range: float = 0.02
    seed: int = 0


@dataclass(frozen=True)
class PretrainConfig(_Section):
    """Brief supervised pretraining of the tiny base model on short answers."""

    train_set: str
    steps: int
    batch_size: int
    learning_rate: float
    curriculum_templates: tuple[str, ...] = ()
    curriculum_steps: int = 0
    warmup_steps: int = 20
    weight_decay: float = 0.01
    seed: int = 0
    perception_steps: int = 0              # 0: the vision tower keeps its random init (synergy/vision_pretrain.py)
    perception_batch_size: int = 32
    perception_learning_rate: float = 1.0e-3
    perception_position: bool = False      # the code also names each cell's row and column (synergy/vision_pretrain.py)


@dataclass(frozen=True)
class BaseModelConfig(_Section):
    source: str                      # tiny (built here) or hf (a Hugging Face model folder)
    path: str | None = None          # hf: hub id, fetched into resources/models/ by rule download_model
    revision: str | None = None      # hf: hub revision to pin
    local_path: str | None = None    # hf: a local model folder that replaces the download
    tiny: TinyModelSettings | None = None
    pretrain: PretrainConfig | None = None
    trust_remote_code: bool = False  # run a checkpoint's own Python code (auto_map) when loading it; off by default


@dataclass(frozen=True)
class SamplingSettings(_Section):
    """Sampling of n answers per question (mirrors synergy.generate.SamplingConfig)."""

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    max_batch_sequences: int = 256


@dataclass(frozen=True)
class DifficultyConfig(_Section):
    """Difficulty levels from the base model's pass rate (paper §2.3)."""

    num_samples: int
    thresholds: tuple[int, ...]
    reasoning_instruction: bool
    sampling: SamplingSettings
    backend: str = "hf"              # hf (transformers) or vllm (GPU only; synergy.generate.get_backend)

    def __post_init__(self):
        _check_backend("difficulty.backend", self.backend)
        t = self.thresholds
        if len(t) != len(LEVELS) - 1 or any(a <= b for a, b in zip(t, t[1:])):
            raise ConfigError(f"config key 'difficulty.thresholds': need {len(LEVELS) - 1} strictly decreasing "
                              f"pass counts (L1..L4 lower bounds), got {list(t)}")
        if t[0] > self.num_samples:
            raise ConfigError(f"config key 'difficulty.thresholds': {t[0]} passes can never be reached with "
                              f"difficulty.num_samples={self.num_samples}")


@dataclass(frozen=True)
class PromptConfig(_Section):
    image_position: str = "after_text"
    max_pixels: int | None = None    # cap on an image's pixels, shared by training and generation (None: processor default)


@dataclass(frozen=True)
class GradingConfig(_Section):
    timeout_s: float = 5.0
    max_failure_share: float = 0.5  # GRPO stops when more of a step's rollouts time out / fail grading


@dataclass(frozen=True)
class EvalConfig(_Section):
    """Evaluation of every arm (paper §2.4: 4 runs, T 0.6, top-p 0.95, top-k 20)."""

    num_samples: int
    sampling: SamplingSettings
    backend: str = "hf"              # hf (transformers) or vllm (GPU only)
    per_job: str = "benchmark"       # one job per (arm, benchmark), or per arm for all benchmarks (saves the
                                     # ~5-8 s of imports and model loading of each job: the embedded study)

    def __post_init__(self):
        _check_backend("evaluation.backend", self.backend)
        if self.per_job not in ("benchmark", "arm"):
            raise ConfigError(f"config key 'evaluation.per_job' must be benchmark or arm, got {self.per_job!r}")


@dataclass(frozen=True)
class VLLMConfig(_Section):
    """The ``vllm`` generation backend (synergy/generate/vllm.py; GPU only)."""

    tensor_parallel_size: int = 1        # GPUs one model is split over (7B: 1; a job's GPUs beyond it are unused)
    gpu_memory_utilization: float = 0.9  # share of GPU memory vLLM may take (weights + KV cache)
    max_model_len: int | None = None     # context length (prompt + answer); None: the model's own
    limit_mm_per_prompt: int = 1         # images per prompt vLLM reserves memory for (MMMU has up to 7)
    rollout_gpu_memory_utilization: float = 0.3  # GRPO (grpo.rollout_backend: vllm): the colocated engine's share,
                                                 # next to the trainer on the same GPU (TRL's colocate default)
    rollout_max_num_batched_tokens: int | None = 16384  # GRPO engine: tokens per vLLM step (bounds its activation
                                                 # memory; must hold one prompt's image tokens); None: vLLM's default

    def __post_init__(self):
        for key in ("gpu_memory_utilization", "rollout_gpu_memory_utilization"):
            value = getattr(self, key)
            if not 0 < value <= 1:
                raise ConfigError(f"config key 'vllm.{key}' must be in (0, 1], got {value}")
        if self.rollout_max_num_batched_tokens is not None and self.rollout_max_num_batched_tokens < 1:
            raise ConfigError(f"config key 'vllm.rollout_max_num_batched_tokens' must be >= 1 or null, "
                              f"got {self.rollout_max_num_batched_tokens}")
        if self.tensor_parallel_size < 1 or self.limit_mm_per_prompt < 0:
            raise ConfigError("config keys 'vllm.tensor_parallel_size' >= 1 and 'vllm.limit_mm_per_prompt' >= 0 needed, "
                              f"got {self.tensor_parallel_size} and {self.limit_mm_per_prompt}")


@dataclass(frozen=True)
class TrackingConfig(_Section):
    """Optional experiment tracking of the training metrics (synergy/train/tracking.py); parquet stays the record."""

    backends: tuple[str, ...] = ()   # accelerate trackers: tensorboard, wandb, mlflow (empty: off)
    dir: str | None = None           # where TensorBoard / MLflow write (default: logs/<study>/tracking)


@dataclass(frozen=True)
class ShardingConfig(_Section):
    """Questions of a benchmark split over this many jobs (one Slurm job each), then gathered; 1 = one job."""

    difficulty: int = 1
    evaluation: int = 1
