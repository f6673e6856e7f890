"""The ``findings:`` section of a study config: which arm plays which role in the paper's claims, and the
stated tolerances of the claims that are not plain directions (docs/findings.md §2).

Arms are named by role so that any study, the embedded one or config/paper.yaml or one of a user's own,
can be checked: a role whose arm the study lacks makes the claims that need it *not measurable*.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synergy.config.base import ConfigError, _Section


@dataclass(frozen=True)
class FindingRoles(_Section):
    base: str = "base"
    sft: str = "sft-eureka"                 # the long-CoT SFT arm of Fig. 1 (Eureka-Distill)
    rl: str = "rl"                          # GRPO with the KL term (Tables 2, 3, 6)
    rl_nokl: str = "rl-nokl"                # Table 2's beta = 0
    rl_noeasy: str = "rl-noeasy"            # Table 3: without the easiest questions
    sft_reflective: str = "sft-s1.1-r1"     # Table 1: the reflective traces (s1.1-R1)
    sft_verbose: str = "sft-s1-gemini"      # Table 1: the verbose traces (s1-Gemini2)
    twostage: str = "twostage"
    interleaved: str = "interleaved"
    progressive: str = "progressive"
    mixing: str = "mixing"
    merge: str = "merge-linear-0.25"        # Table 6's merging row
    routed: str = "routed"                  # beyond the paper: the routed arm (claim R1, docs/routing.md)
    merge_method: str = "linear"            # Fig. 14: the method whose ratio sweep is checked (merge-<method>-<ratio>)


@dataclass(frozen=True)
class FindingsConfig(_Section):
    """``findings:`` of a study config (optional; these defaults apply without it)."""

    roles: FindingRoles = field(default_factory=FindingRoles)
    length_ratio: float = 3.0               # F6: SFT answers at least this many times as long as base and RL answers
    words_tolerance: float = 0.25           # F10: RL's reasoning words per response within this of base's
    merge_tolerance: float = 2.0            # F14: no step against the endpoints' direction larger than this (points)
    synergy_tolerance: float = 1.0          # F11: the best combination at most this many points above its better parent

    def __post_init__(self):
        if self.length_ratio <= 1:
            raise ConfigError(f"config key 'findings.length_ratio': must be > 1, got {self.length_ratio}")
        for key in ("words_tolerance", "merge_tolerance", "synergy_tolerance"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key 'findings.{key}': must be > 0, got {getattr(self, key)}")
