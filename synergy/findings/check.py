"""The paper's claims, F1-F14, each as a statistic with a bootstrap interval and a verdict (docs/findings.md §2).

Sources (docs/paper.md §8-9): Fig. 1 (per-level gains over the base model), Fig. 2 / 8 (response
lengths), Table 1 (trace quality), Table 2 / Fig. 4 (the KL term), Table 3 (the easiest questions),
Table 5 (reasoning words), Table 6 (the combinations), Table 7 (data mixing's lengths), Fig. 14
(merging). Paper values are means over its five benchmarks, computed from docs/paper.md's tables and
the Fig. 1 values digitised in docs/findings.md §3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from synergy.config import LEVELS
from synergy.findings import verdict as V
from synergy.findings.frame import Frame, build_frame
from synergy.findings.settings import FindingsConfig

COLUMNS = {"claim": pl.String, "statement": pl.String, "source": pl.String, "statistic": pl.String,
           "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "paper": pl.String,
           "verdict": pl.String, "detail": pl.String}


class _Missing(Exception):
    """An arm or log a claim needs is absent from the study."""


def _interval(x: np.ndarray, confidence: float) -> tuple[float, float, float]:
    draws = x[1:]
    if np.isnan(x[0]) or not draws.size or np.isnan(draws).all():
        return float("nan"), float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(draws, [alpha, 1 - alpha])
    return float(x[0]), float(low), float(high)


class _Checker:
    def __init__(self, frame: Frame | None, roles: Mapping[str, str], cfg: FindingsConfig, confidence: float,
                 entropy: Mapping[str, np.ndarray], merge_sweep: Sequence[tuple[float, str]]):
        self.frame, self.roles, self.cfg, self.conf = frame, roles, cfg, confidence
        self.entropy, self.merge_sweep = entropy, list(merge_sweep)

    # ------------------------------------------------------------------ building blocks (arrays over draws)
    def arm(self, role: str) -> str:
        name = self.roles.get(role)
        if self.frame is None or name is None or name not in self.frame.values:
            raise _Missing(f"no {role} arm ({name or 'not configured'})")
        return name

    def mean(self, role: str, metric: str, levels: Sequence[str] = LEVELS) -> np.ndarray:
        return self.frame.pooled(self.arm(role), metric, levels)

    def gain(self, role: str, ref: str, levels: Sequence[str] = LEVELS, metric: str = "accuracy") -> np.ndarray:
        return self.mean(role, metric, levels) - self.mean(ref, metric, levels)

    def profile(self, role: str) -> np.ndarray:
        """(draws, levels): per-level accuracy gain over the base model."""
        return (self.frame.level_means(self.arm(role), "accuracy")
                - self.frame.level_means(self.arm("base"), "accuracy"))

    def part(self, label: str, x: np.ndarray, rule: str, **kw) -> dict:
        value, low, high = _interval(x, self.conf)
        if rule == "directional":
            verdict = V.directional(low, high, kw["sign"], kw.get("threshold", 0.0))
        elif rule == "about_equal":
            verdict = V.about_equal(low, high, kw["tolerance"])
        else:
            verdict = V.at_most(low, high, kw["tolerance"])
        return {"label": label, "value": value, "low": low, "high": high, "verdict": verdict}

    # ------------------------------------------------------------------ the claims
    def F1(self):
        return [self.part("sft - base, L1", self.gain("sft", "base", ["L1"]), "directional", sign=-1)]

    def F2(self):
        return [self.part(f"sft - base, {lv}", self.gain("sft", "base", [lv]), "directional", sign=1)
                for lv in ("L4", "L5")]

    def F3(self):
        return [self.part("sft - rl, L5", self.gain("sft", "rl", ["L5"]), "directional", sign=1)]

    def F4(self):
        return [self.part("rl - base, L2-L4", self.gain("rl", "base", ["L2", "L3", "L4"]), "directional", sign=1)]

    def F5(self):
        spread = {r: np.nanstd(self.profile(r), axis=1) for r in ("sft", "rl")}
        return [self.part("spread of per-level gains: sft - rl", spread["sft"] - spread["rl"], "directional", sign=1)]

    def F6(self):
        t = self.cfg.length_ratio
        sft = self.mean("sft", "length")
        return [self.part(f"length sft / {r}", sft / self.mean(r, "length"), "directional", sign=1, threshold=t)
                for r in ("base", "rl")]

    def F7(self):
        return [self.part("sft_reflective - sft_verbose", self.gain("sft_reflective", "sft_verbose"),
                          "directional", sign=1)]

    def F8(self):
        parts = [self.part("rl - rl_nokl", self.gain("rl", "rl_nokl"), "directional", sign=1)]
        ent = {r: self.entropy.get(self.arm(r)) for r in ("rl", "rl_nokl")}
        if any(v is None or not len(v) for v in ent.values()):
            raise _Missing("no GRPO training log with entropies for rl and rl_nokl")
        rng = np.random.default_rng([self.frame.seed, 8])
        draws = {r: np.concatenate([[v.mean()], v[rng.integers(0, v.size, (self.frame.resamples, v.size))].mean(axis=1)])
                 for r, v in ent.items()}
        parts.append(self.part("final entropy rl_nokl - rl", draws["rl_nokl"] - draws["rl"], "directional", sign=-1))
        return parts

    def F9(self):
        return [self.part("rl - rl_noeasy", self.gain("rl", "rl_noeasy"), "directional", sign=1)]

    def F10(self):
        return [self.part("words/response sft - base", self.gain("sft", "base", metric="words"), "directional", sign=1),
                self.part("words/response rl - base", self.gain("rl", "base", metric="words"), "about_equal",
                          tolerance=self.cfg.words_tolerance)]

    def _combos(self) -> list[str]:
        have = []
        for role in ("twostage", "interleaved", "progressive", "mixing", "merge"):
            try:
                self.arm(role)
                have.append(role)
            except _Missing:
                pass
        if not have:
            raise _Missing("no combination arm")
        return have

    def F11(self):
        acc = {r: self.mean(r, "accuracy") for r in ("sft", "rl", *self._combos())}
        parent = max(("sft", "rl"), key=lambda r: acc[r][0])
        best = max(self._combos(), key=lambda r: acc[r][0])
        return [self.part(f"best combination ({self.roles[best]}) - better parent ({self.roles[parent]})",
                          acc[best] - acc[parent], "at_most", tolerance=self.cfg.synergy_tolerance)]

    def R1(self):
        return [self.part(f"routed - {r}", self.gain("routed", r), "directional", sign=1) for r in ("rl", "sft")]

    def F12(self):
        prof = {r: self.profile(r) for r in ("sft", "rl")}

        def dist(a, b):
            return np.sqrt(np.nanmean((a - b) ** 2, axis=1))

        parts = []
        for role, near in (("twostage", "sft"), ("progressive", "rl"), ("mixing", "rl"), ("merge", "rl")):
            p = self.profile(role)
            far = "rl" if near == "sft" else "sft"
            parts.append(self.part(f"{self.roles[role]}: distance to {far} - to {near}",
                                   dist(p, prof[far]) - dist(p, prof[near]), "directional", sign=1))
        return parts

    def F13(self):
        return [self.part("length mixing - rl (tokens)", self.gain("mixing", "rl", metric="length"), "directional",
                          sign=1)]

    def F14(self):
        if len(self.merge_sweep) < 3:
            raise _Missing("fewer than 3 ratios of the merge sweep")
        arms = [a for _, a in sorted(self.merge_sweep)]
        for a in arms:
            if self.frame is None or a not in self.frame.values:
                raise _Missing(f"no merge arm {a}")
        acc = np.stack([self.frame.pooled(a, "accuracy") for a in arms], axis=1)
        direction = 1.0 if acc[0, -1] >= acc[0, 0] else -1.0
        against = (-direction * np.diff(acc, axis=1)).max(axis=1)
        return [self.part("largest step against the endpoints' direction (points)", against, "at_most",
                          tolerance=self.cfg.merge_tolerance)]


# (id, statement, source, statistic of the row, paper's value)
CLAIMS: tuple[tuple[str, str, str, str, str], ...] = (
    ("F1", "SFT loses on L1", "§2.3, Fig. 1", "gain (points)", "-10.7"),
    ("F2", "SFT gains on L4 and on L5", "Fig. 1", "gain (points), smaller part", "+15.2 / +13.9"),
    ("F3", "SFT beats RL on L5", "Fig. 1", "gain (points)", "+6.4"),
    ("F4", "RL gains on L2-L4", "Fig. 1", "gain (points)", "+12.3"),
    ("F5", "RL's gains are more even across levels than SFT's", "§2.3, Fig. 1", "std of level gains, sft - rl",
     "+3.8"),
    ("F6", "SFT answers at least 3x as long as base and RL answers", "Fig. 2, Fig. 8", "length ratio, smaller part",
     ">10x"),
    ("F7", "reflective traces beat verbose ones (s1.1-R1 > s1-Gemini2)", "Table 1", "gain (points)", "+3.8"),
    ("F8", "the KL term helps, and without it entropy falls lower", "Table 2, Fig. 4", "gain (points)", "+2.2"),
    ("F9", "keeping the easiest questions helps", "Table 3", "gain (points)", "+2.3"),
    ("F10", "reasoning words: SFT far above base, RL about equal to base", "Table 5", "words per response",
     "wait: 0 / 249,091 / 0"),
    ("F11", "the dilemma: no combination beats the better parent on average", "Table 6", "gain (points)",
     "-0.2 (progressive - RL)"),
    ("F12", "two-stage ends near SFT's per-level profile; progressive, mixing, merging near RL's", "Fig. 1",
     "distance margin (points), smallest part", ""),
    ("F13", "data mixing answers longer than RL's", "Table 7", "length difference (tokens)", "+416"),
    ("F14", "linear merging interpolates: accuracy monotone in the SFT ratio", "Fig. 14",
     "largest step against (points)", "monotone"),
    ("R1", "beyond the paper: routing by the RL arm's self-agreement beats both parents on average",
     "docs/routing.md", "gain (points), smaller part", ""),
)


def paper_holds(table: pl.DataFrame) -> int:
    """How many of the paper's own claims (F1..F14; not the R claims beyond the paper) hold."""
    return int(((table["verdict"] == V.HOLDS) & table["claim"].str.starts_with("F")).sum())


def _fmt(p: dict) -> str:
    if np.isnan(p["value"]):
        return f"{p['label']}: not measurable"
    return f"{p['label']}: {p['value']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}] {p['verdict']}"


def check_findings(evals: pl.DataFrame | None, levels: pl.DataFrame | None, roles: Mapping[str, str],
                   cfg: FindingsConfig | None = None, *, words: Sequence[str] = (), resamples: int = 2000,
                   confidence: float = 0.95, seed: int = 0, entropy: Mapping[str, np.ndarray] | None = None,
                   merge_sweep: Sequence[tuple[float, str]] = ()) -> pl.DataFrame:
    """One row per claim (``COLUMNS``). ``roles`` maps a role (base, sft, rl, ...) to the study's arm of that
    role, only for arms the study has; ``entropy`` maps a GRPO arm to its entropies over the last quarter of its
    steps; ``merge_sweep`` lists (SFT ratio, arm) of the Fig. 14 method."""
    cfg = cfg or FindingsConfig()
    present = list(dict.fromkeys([*roles.values(), *(a for _, a in merge_sweep)]))
    frame = None
    if evals is not None and levels is not None and present:
        base = roles.get("base")
        order = ([base] if base in present else []) + [a for a in present if a != base]
        frame = build_frame(evals, levels, order, words, resamples=resamples, seed=seed)
    checker = _Checker(frame, roles, cfg, confidence, entropy or {}, merge_sweep)
    rows = []
    for cid, statement, source, statistic, paper in CLAIMS:
        try:
            parts = getattr(checker, cid)()
        except _Missing as exc:
            rows.append({"claim": cid, "statement": statement, "source": source, "statistic": statistic,
                         "value": None, "ci_low": None, "ci_high": None, "paper": paper,
                         "verdict": V.NOT_MEASURABLE, "detail": str(exc)})
            continue
        smallest = "smaller part" in statistic or "smallest part" in statistic
        head = min(parts, key=lambda p: np.inf if np.isnan(p["value"]) else p["value"]) if smallest else parts[0]
        nan = [None if np.isnan(head[k]) else head[k] for k in ("value", "low", "high")]
        rows.append({"claim": cid, "statement": statement, "source": source, "statistic": statistic,
                     "value": nan[0], "ci_low": nan[1], "ci_high": nan[2], "paper": paper,
                     "verdict": V.combine([p["verdict"] for p in parts]),
                     "detail": "; ".join(_fmt(p) for p in parts)})
    return pl.DataFrame(rows, schema=COLUMNS)
