"""The merge methods of paper §3.3 on tensors: linear, SLERP, TIES (MergeKit's definitions).

``t`` = SFT ratio, ``a`` = the RL tensor, ``b`` = the SFT tensor; computed in float32 (SLERP's
angle in float64), cast back to the RL parent's dtype:

* **linear** (model soups): ``(1 - t) * a + t * b``.
* **slerp** (MergeKit ``slerp``): the angle ``Ω`` between the flattened, normalised tensors;
  ``sin((1-t)Ω)/sin Ω * a + sin(tΩ)/sin Ω * b`` on the *unnormalised* tensors; when
  ``|cos Ω| > dot_threshold`` (nearly parallel, MergeKit 0.9995) it falls back to linear.
* **ties** (Yadav et al. 2023, MergeKit ``ties``): task vectors ``d_i = θ_i - θ_base``; each is
  trimmed to its top ``density`` share of entries by magnitude; the sign of every entry is elected
  from the weighted sum of the trimmed vectors; the merged vector is the weighted mean over the
  vectors that agree with the elected sign (disjoint mean; MergeKit's ``normalize: true``), with
  weights ``(1 - t, t)``; the result is ``θ_base + scale * merged``. Tie rule: an entry survives
  trimming when its magnitude reaches the k-th largest (``k = round(density * n)``), so entries tied
  at the threshold all survive; MergeKit keeps exactly k. Where the weighted sum is exactly 0 no sign
  is elected (the entry keeps the base value); MergeKit elects + (docs/merging.md §3).

At the endpoints every method returns the parent exactly (ratio 0 = the RL arm, 1 = the SFT arm).
``magnitude_histogram`` / ``threshold_from_histogram`` find TIES' exact threshold from streamed
chunks (a radix selection on the float32 bit patterns), without a whole-tensor copy.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from synergy.merge.safetensors_io import MergeError

log = logging.getLogger("synergy.merge")

METHODS = ("linear", "ties", "slerp")
BACKENDS = ("native", "mergekit")
HIST_BINS = 1 << 16



def linear(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """``(1 - t) * a + t * b`` (t = weight of ``b``)."""
    return (1.0 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = 0.9995) -> tuple[torch.Tensor, bool]:
    """Spherical interpolation from ``a`` (t = 0) to ``b`` (t = 1); returns (tensor, fell_back_to_linear).

    The angle comes from the normalised flattened tensors; the interpolation weights apply to
    the unnormalised ones (MergeKit). Nearly parallel tensors (``|cos| > dot_threshold``) and
    zero tensors use ``linear``.
    """
    a32, b32 = a.double().flatten(), b.double().flatten()
    na, nb = a32.norm(), b32.norm()
    if na == 0 or nb == 0:
        return linear(a, b, t), True
    dot = float(torch.dot(a32 / na, b32 / nb).clamp(-1.0, 1.0))
    if abs(dot) > dot_threshold:
        return linear(a, b, t), True
    omega = math.acos(dot)
    so = math.sin(omega)
    wa, wb = math.sin((1.0 - t) * omega) / so, math.sin(t * omega) / so
    return (wa * a + wb * b).to(a.dtype), False  # weights applied in the inputs' precision (float32), as MergeKit


def trim_threshold(magnitudes: torch.Tensor, density: float, *, in_place: bool = False) -> float:
    """The magnitude at or above which an entry survives TIES' trimming: the ``k``-th largest, ``k = round(density * n)``.

    Entries tied with the threshold all survive (so slightly more than ``k`` may be kept); ``inf``
    when ``k`` is 0 (nothing survives), 0 when ``density`` is 1 (everything survives).
    ``in_place``: ``magnitudes`` is scratch (a contiguous CPU float tensor) and may be reordered: the
    selection then needs no copy (numpy's in-place partition; ``torch.kthvalue`` copies the input and
    allocates int64 indices, several times the tensor's size). Same value either way: exact selection.
    """
    n = magnitudes.numel()
    if density >= 1.0 or n == 0:
        return 0.0
    k = int(round(density * n))
    if k <= 0:
        return math.inf
    if in_place and magnitudes.is_contiguous() and magnitudes.device.type == "cpu":
        a = magnitudes.reshape(-1).numpy()
        a.partition(n - k)
        return float(a[n - k])
    return float(torch.kthvalue(magnitudes.reshape(-1), n - k + 1).values)


def _trim(delta: torch.Tensor, density: float, threshold: float | None = None) -> torch.Tensor:
    """Keep the entries whose magnitude reaches the ``density`` threshold (``trim_threshold``), zero the rest."""
    thr = trim_threshold(delta.abs(), density) if threshold is None else threshold
    if thr <= 0.0:
        return delta
    return torch.where(delta.abs() >= thr, delta, torch.zeros_like(delta))


def ties(base: torch.Tensor, tensors: list[torch.Tensor], weights: list[float], density: float = 0.5,
         scale: float = 1.0, thresholds: list[float] | None = None) -> torch.Tensor:
    """TIES-merging: trim each task vector, elect signs, disjoint weighted mean, add to ``base``.

    ``thresholds`` (one per tensor) are the trimming magnitudes when computed elsewhere (e.g. over
    the whole tensor while this call sees a chunk of its rows).
    """
    if len(tensors) != len(weights):
        raise MergeError("ties: one weight per tensor")
    thr = thresholds or [None] * len(tensors)
    deltas = torch.stack([_trim(t - base, density, h) for t, h in zip(tensors, thr)])
    w = torch.tensor(weights, dtype=deltas.dtype).view(-1, *([1] * base.dim()))
    weighted = deltas * w
    sign = torch.sign(weighted.sum(0))  # elected sign; 0 where the weighted sum is 0
    agree = (torch.sign(deltas) == sign) & (deltas != 0)
    num = (weighted * agree).sum(0)
    den = (w * agree).sum(0)
    merged = torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))
    return base + scale * merged


@dataclass
class MergeSettings:
    method: str
    sft_ratio: float
    density: float = 0.5
    scale: float = 1.0
    dot_threshold: float = 0.9995
    backend: str = "native"  # native (synergy.merge.engine) or mergekit (synergy.merge.mergekit_backend)

    def __post_init__(self):
        if self.method not in METHODS:
            raise MergeError(f"merge method must be one of {METHODS}, got {self.method!r}")
        if self.backend not in BACKENDS:
            raise MergeError(f"merge backend must be one of {BACKENDS}, got {self.backend!r}")
        if not 0.0 <= self.sft_ratio <= 1.0:
            raise MergeError(f"sft_ratio must be in [0, 1], got {self.sft_ratio}")
        if not 0.0 < self.density <= 1.0:
            raise MergeError(f"ties density must be in (0, 1], got {self.density}")


@dataclass
class _Stats:
    tensors: int = 0
    parameters: int = 0
    copied: int = 0
    slerp_linear_fallbacks: list[str] = field(default_factory=list)


def merge_tensor(rl: torch.Tensor, sft: torch.Tensor, settings: MergeSettings, base: torch.Tensor | None = None,
                 name: str = "", stats: _Stats | None = None) -> torch.Tensor:
    """One merged tensor in ``rl``'s dtype (float32 arithmetic); endpoints return a parent unchanged."""
    if rl.shape != sft.shape:
        raise MergeError(f"tensor {name!r}: shapes differ, RL {tuple(rl.shape)} vs SFT {tuple(sft.shape)}")
    t = settings.sft_ratio
    if not rl.dtype.is_floating_point:
        if not torch.equal(rl, sft.to(rl.dtype)):
            raise MergeError(f"tensor {name!r} is {rl.dtype} (not floating point) and differs between the parents")
        if stats:
            stats.copied += 1
        return rl.clone()
    if t == 0.0:
        return rl.clone()
    if t == 1.0:
        return sft.to(rl.dtype).clone()
    a, b = rl.float(), sft.float()
    if settings.method == "linear":
        out = linear(a, b, t)
    elif settings.method == "slerp":
        out, fell_back = slerp(a, b, t, settings.dot_threshold)
        if fell_back:
            log.info("slerp: %s is nearly parallel in both parents (|cos| > %g): linear interpolation used", name,
                     settings.dot_threshold)
            if stats:
                stats.slerp_linear_fallbacks.append(name)
    else:
        if base is None:
            raise MergeError(f"ties needs the base model's tensor {name!r}")
        if base.shape != rl.shape:
            raise MergeError(f"tensor {name!r}: base shape {tuple(base.shape)} differs from {tuple(rl.shape)}")
        out = ties(base.float(), [a, b], [1.0 - t, t], settings.density, settings.scale)
    return out.to(rl.dtype)


def magnitude_histogram(mags: torch.Tensor) -> torch.Tensor:
    """Counts of the top 16 bits of non-negative float32 magnitudes (``HIST_BINS`` buckets, ordered as the values)."""
    bits = mags.float().contiguous().reshape(-1).view(torch.int32) >> 16
    return torch.bincount(bits, minlength=HIST_BINS)


def threshold_bucket(hist: torch.Tensor, density: float) -> tuple[int, int] | float:
    """Where TIES' k-th largest magnitude lies: ``(bucket, its rank from the top within the bucket)``,
    or the threshold itself when it is 0 (density 1) or ``inf`` (k = 0)."""
    n = int(hist.sum())
    if density >= 1.0 or n == 0:
        return 0.0
    k = int(round(density * n))
    if k <= 0:
        return math.inf
    above = hist.flip(0).cumsum(0).flip(0) - hist  # entries in higher buckets
    b = int(((above < k) & (above + hist >= k)).nonzero()[-1])
    return b, k - int(above[b])


def bucket_values(mags: torch.Tensor, bucket: int) -> torch.Tensor:
    """The magnitudes that fall in ``bucket`` (``magnitude_histogram``'s bucketing)."""
    flat = mags.float().contiguous().reshape(-1)
    return flat[(flat.view(torch.int32) >> 16) == bucket]


def threshold_from_histogram(values: torch.Tensor, rank: int) -> float:
    """The ``rank``-th largest (1-based) of one bucket's values: the exact k-th largest of the whole tensor."""
    return float(torch.topk(values, rank).values[-1]) if rank <= 4096 else \
        float(torch.kthvalue(values, values.numel() - rank + 1).values)
