"""The native merge engine (paper §3.3): tensors read, combined and written in parallel, near the disk.

A merge is a stream of work units in the output's order: a small tensor is one unit
(``merge_tensor``); a tensor larger than ``chunk_bytes`` (as float32) is cut into row ranges, one
unit each. A thread pool (``threads``) runs the units (reading with ``seek`` + ``readinto`` and
combining in torch both release the GIL); the calling thread writes finished units in order with
the streaming writer and keeps at most ``2 * threads`` units in flight, so memory stays near a few
chunks per thread. Each thread reads and combines a chunk in its own reusable buffers, in place
(``_Scratch``): fresh chunk-sized tensors would each be new memory pages, and faulting those in,
serialised across threads by the kernel, took most of a merge's time (docs/merging.md §4). The methods that need a whole-tensor statistic first compute it from parallel
passes over the chunks: SLERP the dot product and norms (float64 partial sums), TIES each task
vector's exact trimming threshold, by a radix selection (``methods.magnitude_histogram``: a
histogram of the top 16 bits of the magnitudes, then the values of the one bucket that holds the
k-th largest) instead of a float32 copy of the whole tensor. Results equal ``merge_tensor`` on the
whole tensors up to float summation order (SLERP's angle), exactly for linear and TIES.

Shards and the ``model.safetensors.index.json`` keep the RL parent's layout; every other file of
the RL parent's folder (config, tokenizer, processor, generation config) is copied, so the result
loads with ``from_pretrained`` like any arm. Keys are matched through a canonical (transformers >=
4.52) name, so checkpoints of either Qwen2.5-VL layout merge with each other; the output uses the
RL parent's names. Non-float tensors must be equal in both parents and are copied.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from synergy.io import share_tree
from synergy.merge.methods import (
    MergeSettings,
    _Stats,
    bucket_values,
    magnitude_histogram,
    merge_tensor,
    threshold_bucket,
    threshold_from_histogram,
    ties,
)
from synergy.merge.safetensors_io import MergeError, SafetensorsReader, StreamingSafetensorsWriter

log = logging.getLogger("synergy.merge")

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


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

    def get_rows(self, canonical: str, start: int, end: int, into: torch.Tensor | None = None) -> torch.Tensor:
        f, k = self.where[canonical]
        return self.readers[f].get_rows(k, start, end, into=into)


def _check_keys(rl: _Checkpoint, other: _Checkpoint, what: str) -> None:
    a, b = set(rl.where), set(other.where)
    if a != b:
        only_a, only_b = sorted(a - b)[:5], sorted(b - a)[:5]
        raise MergeError(f"the RL parent ({rl.dir}) and the {what} ({other.dir}) have different tensors: "
                         f"only in RL {only_a}, only in {what} {only_b}")


class _Scratch(threading.local):
    """A thread's reusable buffers: raw bytes of a chunk of each input, and the chunk as float32, per slot."""

    def __init__(self):
        self.raw: dict[int, torch.Tensor] = {}
        self.f32: dict[int, torch.Tensor] = {}

    @staticmethod
    def _get(pool: dict[int, torch.Tensor], slot: int, n: int, dtype: torch.dtype) -> torch.Tensor:
        buf = pool.get(slot)
        if buf is None or buf.numel() < n:
            buf = pool[slot] = torch.empty(n, dtype=dtype)
        return buf[:n]

    def read_f32(self, slot: int, nbytes: int, read: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``read(raw_buffer)``'s rows (``nbytes`` bytes) as float32, in this thread's buffers for ``slot``
        (valid until the thread's next use of the slot)."""
        raw = read(self._get(self.raw, slot, nbytes, torch.uint8))
        out = self._get(self.f32, slot, raw.numel(), torch.float32).view(raw.shape)
        out.copy_(raw)
        return out

    def like(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        """An uninitialised float32 buffer shaped like ``x`` (slot numbers apart from the inputs')."""
        return self._get(self.f32, slot, x.numel(), torch.float32).view(x.shape)


_SCRATCH = _Scratch()


def _fresh(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` cast to ``dtype`` in new memory (never a view of a scratch buffer, even when no cast is needed)."""
    return x.to(dtype, copy=True)


class _Tensor:
    """One tensor to merge: its readers and row ranges (``None``: merged whole)."""

    def __init__(self, key: str, reader: SafetensorsReader, sft: _Checkpoint, base: _Checkpoint | None,
                 chunk_bytes: int):
        self.key, self.canon, self.reader, self.sft, self.base = key, canonical_key(key), reader, sft, base
        self.dtype, self.shape = reader.info(key)
        if sft.info(self.canon)[1] != self.shape:
            raise MergeError(f"tensor {key!r}: shapes differ, RL {self.shape} vs SFT {sft.info(self.canon)[1]}")
        if base is not None and base.info(self.canon)[1] != self.shape:
            raise MergeError(f"tensor {key!r}: base shape {base.info(self.canon)[1]} differs from {self.shape}")
        self.numel = math.prod(self.shape)
        self.ranges = None
        if self.dtype.is_floating_point and self.shape and self.numel * 4 > chunk_bytes:
            rows_per = max(1, chunk_bytes // (4 * math.prod(self.shape[1:])))
            self.ranges = [(lo, min(lo + rows_per, self.shape[0])) for lo in range(0, self.shape[0], rows_per)]

    def a(self, lo, hi):
        return self.reader.get_rows(self.key, lo, hi)

    # the same rows as float32 in this thread's scratch buffers (slots 0, 1, 2), valid until the thread's next unit
    def fa(self, lo, hi):
        return _SCRATCH.read_f32(0, self._nbytes(lo, hi), lambda buf: self.reader.get_rows(self.key, lo, hi, into=buf))

    def fb(self, lo, hi):
        return _SCRATCH.read_f32(1, self._nbytes(lo, hi), lambda buf: self.sft.get_rows(self.canon, lo, hi, into=buf))

    def fz(self, lo, hi):
        return _SCRATCH.read_f32(2, self._nbytes(lo, hi), lambda buf: self.base.get_rows(self.canon, lo, hi, into=buf))

    def _nbytes(self, lo, hi) -> int:
        return (hi - lo) * math.prod(self.shape[1:]) * self.dtype.itemsize

    def b(self, lo, hi):
        return self.sft.get_rows(self.canon, lo, hi)

    def z(self, lo, hi):
        return self.base.get_rows(self.canon, lo, hi).float()

    def whole(self, settings: MergeSettings, stats: _Stats) -> torch.Tensor:
        a, b = self.reader.get(self.key), self.sft.get(self.canon)
        z = self.base.get(self.canon) if self.base is not None else None
        return merge_tensor(a, b, settings, z, self.key, stats)

    # whole-tensor statistics, from parallel passes over the chunks

    def slerp_weights(self, pool: ThreadPoolExecutor, settings: MergeSettings, stats: _Stats):
        """SLERP's (wa, wb) for this tensor, or None when it falls back to linear."""
        def part(lo, hi):  # float32 products summed per row, the rows' sums added in float64
            x, y = self.fa(lo, hi).reshape(hi - lo, -1), self.fb(lo, hi).reshape(hi - lo, -1)
            prod = _SCRATCH.like(3, x)
            return tuple(float(torch.mul(u, v, out=prod).sum(1).double().sum()) for u, v in ((x, y), (x, x), (y, y)))

        sums = [f.result() for f in [pool.submit(part, lo, hi) for lo, hi in self.ranges]]
        dot, na, nb = (math.fsum(s[i] for s in sums) for i in range(3))
        cos = dot / math.sqrt(na * nb) if na > 0 and nb > 0 else 1.0
        if na == 0 or nb == 0 or abs(cos) > settings.dot_threshold:
            log.info("slerp: %s is nearly parallel in both parents (|cos| > %g): linear interpolation used", self.key,
                     settings.dot_threshold)
            stats.slerp_linear_fallbacks.append(self.key)
            return None
        omega, t = math.acos(max(-1.0, min(1.0, cos))), settings.sft_ratio
        return math.sin((1.0 - t) * omega) / math.sin(omega), math.sin(t * omega) / math.sin(omega)

    def ties_thresholds(self, pool: ThreadPoolExecutor, density: float) -> list[float]:
        """Each task vector's exact trimming threshold (``methods.trim_threshold`` of the whole tensor)."""
        def mags(lo, hi):
            z = self.fz(lo, hi)
            return self.fa(lo, hi).sub_(z).abs_(), self.fb(lo, hi).sub_(z).abs_()

        def hist(lo, hi):
            return [magnitude_histogram(m) for m in mags(lo, hi)]

        parts = [f.result() for f in [pool.submit(hist, lo, hi) for lo, hi in self.ranges]]
        where = [threshold_bucket(sum(p[i] for p in parts), density) for i in range(2)]
        if all(isinstance(w, float) for w in where):
            return list(where)

        def values(lo, hi):
            return [bucket_values(m, w[0]) if isinstance(w, tuple) else None for m, w in zip(mags(lo, hi), where)]

        parts = [f.result() for f in [pool.submit(values, lo, hi) for lo, hi in self.ranges]]
        return [w if isinstance(w, float) else threshold_from_histogram(torch.cat([p[i] for p in parts]), w[1])
                for i, w in enumerate(where)]

    def units(self, pool: ThreadPoolExecutor, settings: MergeSettings, stats: _Stats) -> list[Callable[[], torch.Tensor]]:
        """The functions that compute this tensor's output rows, in order (statistics computed first)."""
        if self.ranges is None:
            return [lambda: self.whole(settings, stats)]
        t, dtype = settings.sft_ratio, self.dtype
        if t in (0.0, 1.0):
            return [(lambda lo=lo, hi=hi: self.a(lo, hi) if t == 0.0 else self.b(lo, hi).to(dtype)) for lo, hi in self.ranges]
        if settings.method in ("linear", "slerp"):
            # linear: (1 - t) * a + t * b; slerp: wa * a + wb * b; in place, the same float32 operations as
            # methods.linear / methods.slerp on whole tensors
            wa, wb = (1.0 - t, t)
            if settings.method == "slerp":
                w = self.slerp_weights(pool, settings, stats)
                wa, wb = w if w is not None else (wa, wb)

            def one(lo, hi):
                x, y = self.fa(lo, hi), self.fb(lo, hi)
                return _fresh(x.mul_(wa).add_(y.mul_(wb)), dtype)

            return [(lambda lo=lo, hi=hi: one(lo, hi)) for lo, hi in self.ranges]
        if self.base is None:
            raise MergeError(f"ties needs the base model's tensor {self.key!r}")
        thr = self.ties_thresholds(pool, settings.density)
        return [(lambda lo=lo, hi=hi: _fresh(ties(self.fz(lo, hi), [self.fa(lo, hi), self.fb(lo, hi)], [1.0 - t, t],
                                                  settings.density, settings.scale, thresholds=thr), dtype))
                for lo, hi in self.ranges]


def _fixed_mmap_threshold(nbytes: int) -> None:
    """Serve allocations above ``nbytes`` with mmap and the smaller ones from the heap (glibc ``mallopt``).

    A fixed threshold stops glibc's own, which rises after each large free: the chunk-sized temporaries
    of the merge threads (below ``nbytes``) then always come from the heap and are reused, instead of
    fresh mmap'd pages that must be faulted in (and, after a rise, from per-thread heaps that grow to
    several times what is alive). Allocations above it (a whole large tensor) go back to the system
    when freed. No-op where glibc is not the C library.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, nbytes)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _write_shard(pool: ThreadPoolExecutor, tensors: list[_Tensor], writer: StreamingSafetensorsWriter,
                 settings: MergeSettings, stats: _Stats, window: int, done: Callable[[_Tensor], None]) -> None:
    """Merge ``tensors`` into ``writer`` in order, at most ``window`` units in flight."""
    pending: deque[tuple[_Tensor, Future, bool]] = deque()

    def flush(limit: int) -> None:
        while len(pending) > limit:
            tensor, fut, last = pending.popleft()
            out = fut.result()
            if tensor.ranges is None:
                writer.write(tensor.key, out)
            else:
                writer.write_rows(tensor.key, out)
            if last:
                done(tensor)

    for tensor in tensors:
        units = tensor.units(pool, settings, stats)
        for i, fn in enumerate(units):
            pending.append((tensor, pool.submit(fn), i == len(units) - 1))
            flush(window)
    flush(0)


def merge_models(rl_dir: str | Path, sft_dir: str | Path, out_dir: str | Path, settings: MergeSettings,
                 base_dir: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
                 chunk_bytes: int = 4 << 20, threads: int | None = None) -> dict:
    """Merge two checkpoints tensor by tensor into ``out_dir``; return a summary (also ``merge_summary.json``).

    ``settings.sft_ratio`` is the SFT model's weight. ``base_dir`` (TIES only) is the model both
    parents were trained from. Raises ``MergeError`` naming the problem if the parents' tensors
    or shapes differ. The output folder is assembled under ``<out_dir>.tmp`` and renamed at the end.
    ``threads`` (default: the CPUs this process may use) read, combine and write in parallel.
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
    largest = max(r.nbytes(k) for f, r in rl.readers.items() for k in rl.files[f])
    threads = threads or len(os.sched_getaffinity(0))
    _fixed_mmap_threshold(16 * chunk_bytes)  # chunk-sized temporaries come from the heap, reused (docs/merging.md §4)

    def done(tensor: _Tensor) -> None:
        stats.tensors += 1
        stats.parameters += tensor.numel
        if progress:
            progress(stats.tensors, total)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="merge") as pool:
        for fname, keys in rl.files.items():
            reader = rl.readers[fname]
            tensors = [_Tensor(k, reader, sft, base, chunk_bytes) for k in keys]
            writer = StreamingSafetensorsWriter(tmp / fname, [(k, *reader.info(k)) for k in keys],
                                                metadata={"format": "pt"})
            try:
                _write_shard(pool, tensors, writer, settings, stats, 2 * threads, done)
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
        "slerp_linear_fallback_tensors": sorted(stats.slerp_linear_fallbacks),
        "largest_tensor_bytes": largest, "threads": threads, "backend": "native", "seconds": round(time.monotonic() - t0, 3),
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
