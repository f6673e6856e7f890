"""Model merging of paper §3.3: Linear, TIES and SLERP between an SFT arm and the RL arm.

The paper merged its SFT and RL checkpoints with MergeKit at SFT-model ratios 0, 0.25, 0.5, 0.75
and 1 (0 = the RL model, 1 = the SFT model) and found no synergy (Linear 0.25 best on average).
This module implements the three methods tensor by tensor over safetensors files, so memory
stays near a few copies of the largest tensor whatever the model size:

* the inputs are read with a small safetensors reader (header + ``seek``/``read`` of a byte range,
  no ``mmap``), so no more than the rows being merged are resident;
* a tensor larger than ``chunk_bytes`` (16 MB as float32) is merged in chunks of rows (linear
  directly; SLERP after a first pass for the angle; TIES after a first pass for each task
  vector's trimming threshold), so the peak is a few chunks plus, for TIES, one float32 copy of
  the largest tensor's magnitudes;
* the output is written with a streaming writer: the header is computed from the parents' shapes
  and dtypes first, then each merged tensor's bytes are appended as soon as it is computed;
* shards and the ``model.safetensors.index.json`` keep the RL parent's layout; every other file
  of the RL parent's folder (config, tokenizer, processor, generation config) is copied, so the
  result loads with ``from_pretrained`` like any arm.

Methods (``t`` = SFT ratio, ``a`` = the RL tensor, ``b`` = the SFT tensor; computed in float32,
cast back to the RL parent's dtype):

* **linear** (model soups): ``(1 - t) * a + t * b``.
* **slerp** (MergeKit ``slerp``): the angle ``Ω`` between the flattened, normalised tensors;
  ``sin((1-t)Ω)/sin Ω * a + sin(tΩ)/sin Ω * b`` on the *unnormalised* tensors; when
  ``|cos Ω| > dot_threshold`` (nearly parallel, MergeKit 0.9995) it falls back to linear and the
  fallback is logged per tensor (and counted in the summary).
* **ties** (Yadav et al. 2023, MergeKit ``ties``): task vectors ``d_i = θ_i - θ_base`` against
  the arms' common starting model; each is trimmed to its top ``density`` share of entries by
  magnitude; the sign of every entry is elected from the weighted sum of the trimmed vectors;
  the merged vector is the weighted mean over the vectors that agree with the elected sign
  (trimming keeps the entries whose magnitude reaches the k-th largest, so ties at the threshold
  all survive)
  (disjoint mean; MergeKit's ``normalize: true``), with weights ``(1 - t, t)``; the result is
  ``θ_base + scale * merged``.

Choices where the paper is silent (documented, configurable in ``merging:``): TIES density 0.5
and scale 1 (MergeKit's examples); the base of TIES is the base model both arms started from.
At the endpoints every method returns the parent exactly (ratio 0 = the RL arm, 1 = the SFT arm,
as the paper defines them), although TIES' formula would return the trimmed task vector there.
Tensors that are not floating point (e.g. integer buffers) must be equal in both parents and are
copied.

Checkpoint key layouts: transformers >= 4.52 saves Qwen2.5-VL as ``model.language_model.*`` /
``model.visual.*`` / ``lm_head.*``, older versions as ``model.*`` / ``visual.*`` / ``lm_head.*``.
Keys are matched through a canonical (new) name, so a checkpoint of either layout merges with one
of the other; the output uses the RL parent's names.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from synergy.io import share_tree

log = logging.getLogger("synergy.merge")

__all__ = [
    "METHODS", "MergeError", "SafetensorsReader", "StreamingSafetensorsWriter", "canonical_key", "linear", "merge_models",
    "merge_tensor", "slerp", "ties",
]

METHODS = ("linear", "ties", "slerp")
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class MergeError(ValueError):
    """The parents cannot be merged (different keys, shapes, or a bad setting); the message says which."""


# ----------------------------------------------------------------------------------------------
# safetensors, one tensor at a time


class SafetensorsReader:
    """Reads one tensor at a time from a ``.safetensors`` file with ``seek`` + ``read`` (no mmap)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise MergeError(f"{self.path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            try:
                header = json.loads(f.read(n))
            except ValueError as exc:
                raise MergeError(f"{self.path}: unreadable safetensors header ({exc})") from exc
        self.metadata = header.pop("__metadata__", None) or {}
        self.entries: dict[str, dict] = header
        self._data_start = 8 + n
        for k, e in header.items():
            if e["dtype"] not in _DTYPES:
                raise MergeError(f"{self.path}: tensor {k!r} has dtype {e['dtype']}, which this merger does not read")

    def keys(self) -> list[str]:
        return list(self.entries)

    def info(self, key: str) -> tuple[torch.dtype, tuple[int, ...]]:
        e = self.entries[key]
        return _DTYPES[e["dtype"]], tuple(e["shape"])

    def nbytes(self, key: str) -> int:
        a, b = self.entries[key]["data_offsets"]
        return b - a

    def get(self, key: str) -> torch.Tensor:
        shape = tuple(self.entries[key]["shape"])
        return self.get_rows(key, 0, shape[0]) if shape else self._read(key, 0, self.nbytes(key), shape)

    def get_rows(self, key: str, start: int, end: int) -> torch.Tensor:
        """Rows ``start:end`` (first dimension) of a tensor: one contiguous byte range of the file."""
        dtype, shape = self.info(key)
        row = math.prod(shape[1:]) * torch.empty((), dtype=dtype).element_size()
        return self._read(key, start * row, end * row, (end - start, *shape[1:]))

    def _read(self, key: str, lo: int, hi: int, shape) -> torch.Tensor:
        a, _ = self.entries[key]["data_offsets"]
        dtype = _DTYPES[self.entries[key]["dtype"]]
        with open(self.path, "rb") as f:
            f.seek(self._data_start + a + lo)
            buf = bytearray(f.read(hi - lo))
        if len(buf) != hi - lo:
            raise MergeError(f"{self.path}: tensor {key!r} is truncated")
        if not buf:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(shape)


class StreamingSafetensorsWriter:
    """Writes a ``.safetensors`` file whose tensors (names, dtypes, shapes) are declared up front.

    The header (8-byte length + JSON, padded with spaces to a multiple of 8 as the reference
    serializer does) is written first; ``write(key, tensor)`` then appends each tensor's bytes in
    the declared order. The file is written under a temporary name and renamed by ``close``, so an
    interrupted merge never leaves a file that looks complete.
    """

    def __init__(self, path: str | Path, layout: list[tuple[str, torch.dtype, tuple[int, ...]]],
                 metadata: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        header: dict = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        offset = 0
        self.order: list[str] = []
        self.expected: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        for key, dtype, shape in layout:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[key] = {"dtype": _NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            self.order.append(key)
            self.expected[key] = (dtype, tuple(shape))
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.tmp, "wb")
        self._f.write(struct.pack("<Q", len(blob)))
        self._f.write(blob)
        self._next = 0
        self._part = 0  # elements of the current tensor written so far

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """The whole tensor ``key`` (the next declared one)."""
        dtype, shape = self._check_next(key)
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise MergeError(f"{self.path}: tensor {key!r} is {tensor.dtype}{tuple(tensor.shape)}, declared {dtype}{shape}")
        self.write_rows(key, tensor)

    def write_rows(self, key: str, rows: torch.Tensor) -> None:
        """The next rows (first dimension) of tensor ``key``; the tensor is complete when all its bytes are written."""
        dtype, shape = self._check_next(key)
        if rows.dtype != dtype or tuple(rows.shape[1:]) != shape[1:]:
            raise MergeError(f"{self.path}: rows of {key!r} are {rows.dtype}{tuple(rows.shape)}, declared {dtype}{shape}")
        t = rows.detach().contiguous().cpu()
        if t.numel():
            self._f.write(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        self._part += t.numel()
        total = math.prod(shape)
        if self._part > total:
            raise MergeError(f"{self.path}: more data than declared for {key!r}")
        if self._part == total:
            self._next += 1
            self._part = 0

    def _check_next(self, key: str):
        if self._next >= len(self.order) or self.order[self._next] != key:
            want = self.order[self._next] if self._next < len(self.order) else "nothing"
            raise MergeError(f"{self.path}: expected tensor {want!r} next, got {key!r}")
        return self.expected[key]

    def close(self) -> None:
        if self._next != len(self.order):
            self._f.close()
            raise MergeError(f"{self.path}: {len(self.order) - self._next} declared tensors were never written")
        self._f.flush()
        self._f.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# the methods, on tensors


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
    return (wa * a.double() + wb * b.double()).to(a.dtype), False


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

    def __post_init__(self):
        if self.method not in METHODS:
            raise MergeError(f"merge method must be one of {METHODS}, got {self.method!r}")
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


# ----------------------------------------------------------------------------------------------
# checkpoints


def canonical_key(key: str) -> str:
    """Qwen2.5-VL key in the transformers >= 4.52 layout (``model.language_model.*``, ``model.visual.*``)."""
    if key.startswith(("model.language_model.", "model.visual.")) or key.startswith("lm_head."):
        return key
    if key.startswith("visual."):
        return "model." + key
    if key.startswith("model."):
        return "model.language_model." + key[len("model."):]
    return key


def _shards(model_dir: Path) -> dict[str, list[str]]:
    """{shard file name: [tensor keys in that file]} of a model folder (sharded or single-file)."""
    index = model_dir / INDEX_NAME
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files: dict[str, list[str]] = {}
        for k, f in weight_map.items():
            files.setdefault(f, []).append(k)
        return files
    single = model_dir / SINGLE_NAME
    if single.exists():
        return {SINGLE_NAME: SafetensorsReader(single).keys()}
    if any(model_dir.glob("*.bin")) or any(model_dir.glob("*.pt")):
        raise MergeError(f"{model_dir}: only pickle weights (*.bin/*.pt) found; merging reads safetensors only")
    raise MergeError(f"{model_dir}: no {SINGLE_NAME} or {INDEX_NAME}")


class _Checkpoint:
    """The tensors of one model folder, by canonical key, each read on demand from its shard."""

    def __init__(self, model_dir: str | Path):
        self.dir = Path(model_dir)
        if not self.dir.is_dir():
            raise MergeError(f"model folder {self.dir} does not exist")
        self.files = _shards(self.dir)
        self.readers = {f: SafetensorsReader(self.dir / f) for f in self.files}
        self.where: dict[str, tuple[str, str]] = {}  # canonical -> (file, own key)
        for f, keys in self.files.items():
            present = set(self.readers[f].keys())
            for k in keys:
                if k not in present:
                    raise MergeError(f"{self.dir / f}: the index lists {k!r} but the file lacks it")
                self.where[canonical_key(k)] = (f, k)

    def get(self, canonical: str) -> torch.Tensor:
        f, k = self.where[canonical]
        return self.readers[f].get(k)

    def info(self, canonical: str):
        f, k = self.where[canonical]
        return self.readers[f].info(k)

    def get_rows(self, canonical: str, start: int, end: int) -> torch.Tensor:
        f, k = self.where[canonical]
        return self.readers[f].get_rows(k, start, end)


def _check_keys(rl: _Checkpoint, other: _Checkpoint, what: str) -> None:
    a, b = set(rl.where), set(other.where)
    if a != b:
        only_a, only_b = sorted(a - b)[:5], sorted(b - a)[:5]
        raise MergeError(f"the RL parent ({rl.dir}) and the {what} ({other.dir}) have different tensors: "
                         f"only in RL {only_a}, only in {what} {only_b}")


def _merge_one(key: str, reader: SafetensorsReader, sft: "_Checkpoint", base: "_Checkpoint | None",
               settings: MergeSettings, writer: StreamingSafetensorsWriter, stats: _Stats, chunk_bytes: int) -> None:
    """Merge one tensor into ``writer``: whole when small, else in chunks of rows of about ``chunk_bytes`` (float32).

    Chunked: linear is elementwise; SLERP first accumulates the dot product and norms over the
    chunks (float64), then combines chunk by chunk; TIES first finds each task vector's trimming
    threshold over the whole tensor (one float32 magnitude array at a time), then merges chunk by
    chunk. The result equals ``merge_tensor`` on the whole tensors up to float summation order.
    """
    canon = canonical_key(key)
    dtype, shape = reader.info(key)
    if sft.info(canon)[1] != shape:
        raise MergeError(f"tensor {key!r}: shapes differ, RL {shape} vs SFT {sft.info(canon)[1]}")
    numel = math.prod(shape)
    t = settings.sft_ratio
    if not dtype.is_floating_point or len(shape) == 0 or numel * 4 <= chunk_bytes:
        a, b = reader.get(key), sft.get(canon)
        writer.write(key, merge_tensor(a, b, settings, base.get(canon) if base is not None else None, key, stats))
        stats.tensors += 1
        stats.parameters += numel
        return
    rows_per = max(1, chunk_bytes // (4 * math.prod(shape[1:])))
    ranges = [(lo, min(lo + rows_per, shape[0])) for lo in range(0, shape[0], rows_per)]

    def A(lo, hi):
        return reader.get_rows(key, lo, hi)

    def B(lo, hi):
        return sft.get_rows(canon, lo, hi)

    if t == 0.0 or t == 1.0:
        for lo, hi in ranges:
            writer.write_rows(key, A(lo, hi) if t == 0.0 else B(lo, hi).to(dtype))
    elif settings.method == "linear":
        for lo, hi in ranges:
            writer.write_rows(key, linear(A(lo, hi).float(), B(lo, hi).float(), t).to(dtype))
    elif settings.method == "slerp":
        dot = na = nb = 0.0
        for lo, hi in ranges:
            a, b = A(lo, hi).double(), B(lo, hi).double()
            dot += float((a * b).sum())
            na += float((a * a).sum())
            nb += float((b * b).sum())
        cos = dot / math.sqrt(na * nb) if na > 0 and nb > 0 else 1.0
        fallback = na == 0 or nb == 0 or abs(cos) > settings.dot_threshold
        if fallback:
            log.info("slerp: %s is nearly parallel in both parents (|cos| > %g): linear interpolation used", key,
                     settings.dot_threshold)
            stats.slerp_linear_fallbacks.append(key)
        else:
            omega = math.acos(max(-1.0, min(1.0, cos)))
            wa, wb = math.sin((1.0 - t) * omega) / math.sin(omega), math.sin(t * omega) / math.sin(omega)
        for lo, hi in ranges:
            a, b = A(lo, hi).float(), B(lo, hi).float()
            out = linear(a, b, t) if fallback else (wa * a.double() + wb * b.double()).float()
            writer.write_rows(key, out.to(dtype))
    else:
        if base is None:
            raise MergeError(f"ties needs the base model's tensor {key!r}")
        if base.info(canon)[1] != shape:
            raise MergeError(f"tensor {key!r}: base shape {base.info(canon)[1]} differs from {shape}")

        def Z(lo, hi):
            return base.get_rows(canon, lo, hi).float()

        thresholds = []
        for get in (A, B):
            mags = torch.empty(numel, dtype=torch.float32)
            row = math.prod(shape[1:])
            for lo, hi in ranges:
                mags[lo * row: hi * row] = (get(lo, hi).float() - Z(lo, hi)).abs_().reshape(-1)
            thresholds.append(trim_threshold(mags, settings.density, in_place=True))
            del mags
        for lo, hi in ranges:
            out = ties(Z(lo, hi), [A(lo, hi).float(), B(lo, hi).float()], [1.0 - t, t], settings.density,
                       settings.scale, thresholds=thresholds)
            writer.write_rows(key, out.to(dtype))
    stats.tensors += 1
    stats.parameters += numel


def merge_models(rl_dir: str | Path, sft_dir: str | Path, out_dir: str | Path, settings: MergeSettings,
                 base_dir: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
                 chunk_bytes: int = 16 << 20) -> dict:
    """Merge two checkpoints tensor by tensor into ``out_dir``; return a summary (also ``merge_summary.json``).

    ``settings.sft_ratio`` is the SFT model's weight. ``base_dir`` (TIES only) is the model both
    parents were trained from. Raises ``MergeError`` naming the problem if the parents' tensors
    or shapes differ. The output folder is assembled under ``<out_dir>.tmp`` and renamed at the end.
    """
    t0 = time.monotonic()
    rl, sft = _Checkpoint(rl_dir), _Checkpoint(sft_dir)
    _check_keys(rl, sft, "SFT parent")
    base = None
    if settings.method == "ties" and 0.0 < settings.sft_ratio < 1.0:
        if base_dir is None:
            raise MergeError("ties needs base_dir (the model both parents started from)")
        base = _Checkpoint(base_dir)
        _check_keys(rl, base, "base model")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")  # hidden: no glob of outputs picks up a half-merged folder
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for p in rl.dir.iterdir():  # config, tokenizer, processor, generation config ...
        if p.is_file() and not p.name.endswith(".safetensors") and p.name != INDEX_NAME and not p.name.endswith(".json.tmp"):
            shutil.copy2(p, tmp / p.name)
    if (rl.dir / INDEX_NAME).exists():
        shutil.copy2(rl.dir / INDEX_NAME, tmp / INDEX_NAME)

    stats = _Stats()
    total = len(rl.where)
    largest = 0
    for fname, keys in rl.files.items():
        reader = rl.readers[fname]
        layout = [(k, *reader.info(k)) for k in keys]
        writer = StreamingSafetensorsWriter(tmp / fname, layout, metadata={"format": "pt"})
        try:
            for k in keys:
                largest = max(largest, reader.nbytes(k))
                _merge_one(k, reader, sft, base, settings, writer, stats, chunk_bytes)
                if progress:
                    progress(stats.tensors, total)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    summary = {
        "method": settings.method, "sft_ratio": settings.sft_ratio, "rl_parent": str(rl.dir), "sft_parent": str(sft.dir),
        "base": str(base.dir) if base is not None else None, "density": settings.density if settings.method == "ties" else None,
        "scale": settings.scale if settings.method == "ties" else None,
        "dot_threshold": settings.dot_threshold if settings.method == "slerp" else None,
        "tensors": stats.tensors, "parameters": stats.parameters, "non_float_tensors_copied": stats.copied,
        "slerp_linear_fallbacks": len(stats.slerp_linear_fallbacks),
        "slerp_linear_fallback_tensors": stats.slerp_linear_fallbacks,
        "largest_tensor_bytes": largest, "seconds": round(time.monotonic() - t0, 3),
    }
    (tmp / "merge_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    share_tree(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info("merged %d tensors (%d parameters) with %s at SFT ratio %g in %.1f s -> %s (%d slerp fallbacks)",
             stats.tensors, stats.parameters, settings.method, settings.sft_ratio, summary["seconds"], out_dir,
             len(stats.slerp_linear_fallbacks))
    return summary


def iter_tensors(model_dir: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(canonical key, tensor) of every tensor of a model folder, one at a time."""
    ck = _Checkpoint(model_dir)
    for c in ck.where:
        yield c, ck.get(c)
