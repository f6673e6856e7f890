"""Merging throughput and memory (synergy.merge, paper §3.3) on synthetic multi-GB checkpoints.

Writes two (three for TIES) synthetic sharded checkpoints of ``--gb`` GB each (bf16, layer-like
tensor shapes, 1 GB shards), then for each method runs ``merge_models`` in a fresh child process
and prints: the time to read the inputs from disk (a plain sequential read of every input shard,
the lower bound of any merge that reads them), the merge time and its throughput, and the child's
peak resident memory (VmHWM) with what importing torch alone takes, against the size of the
largest tensor.

    python benchmarks/bench_merge.py --gb 2 --dir /tmp/merge-bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from synergy.merge import StreamingSafetensorsWriter  # noqa: E402

HIDDEN, INTER, VOCAB = 4096, 11008, 32000


def layout(total_bytes: int) -> list[tuple[str, tuple[int, ...]]]:
    """LLaMA-7B-like tensors (bf16) until ``total_bytes``: embeddings, then layers of attention + MLP."""
    tensors = [("model.language_model.embed_tokens.weight", (VOCAB, HIDDEN))]
    size = VOCAB * HIDDEN * 2
    layer = 0
    while size < total_bytes:
        p = f"model.language_model.layers.{layer}."
        for name, shape in [("self_attn.q_proj.weight", (HIDDEN, HIDDEN)), ("self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
                            ("self_attn.v_proj.weight", (HIDDEN, HIDDEN)), ("self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
                            ("mlp.gate_proj.weight", (INTER, HIDDEN)), ("mlp.up_proj.weight", (INTER, HIDDEN)),
                            ("mlp.down_proj.weight", (HIDDEN, INTER)), ("input_layernorm.weight", (HIDDEN,))]:
            tensors.append((p + name, shape))
            size += 2 * torch.Size(shape).numel()
        layer += 1
    return tensors


def write_checkpoint(folder: Path, tensors, seed: int, shard_bytes: int = 1 << 30) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shards, cur, size = [], [], 0
    for name, shape in tensors:
        n = 2 * torch.Size(shape).numel()
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += n
    shards.append(cur)
    g = torch.Generator().manual_seed(seed)
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        w = StreamingSafetensorsWriter(folder / fname, [(k, torch.bfloat16, s) for k, s in part], {"format": "pt"})
        for k, s in part:
            w.write(k, (torch.randn(s, generator=g) * 0.02).to(torch.bfloat16))
            weight_map[k] = fname
        w.close()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text("{}")


def read_time(folders) -> tuple[float, int]:
    files = [f for d in folders for f in sorted(Path(d).glob("*.safetensors"))]
    t0, n = time.perf_counter(), 0
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(64 << 20):
                n += len(chunk)
    return time.perf_counter() - t0, n


# Peak memory is the child's VmHWM (/proc/self/status): the high-water mark of this process image only.
# (getrusage's ru_maxrss survives exec on Linux, so it would report the parent's RSS at fork time, i.e. the
# benchmark's own checkpoint writing.) "import" is the VmHWM right after importing torch + synergy.merge.
CHILD = """
import json, sys, time

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

from synergy.merge import MergeSettings, merge_models
rl, sft, base, out, method = sys.argv[1:6]
after_import = hwm()
t0 = time.perf_counter()
s = merge_models(rl, sft, out, MergeSettings(method, 0.25), base_dir=base if method == "ties" else None)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss": hwm(), "import_rss": after_import,
                  "largest": s["largest_tensor_bytes"], "params": s["parameters"], "fallbacks": s["slerp_linear_fallbacks"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0, help="size of each synthetic checkpoint (GB)")
    ap.add_argument("--dir", default="/tmp/synergy-merge-bench")
    ap.add_argument("--methods", default="linear,slerp,ties")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    root = Path(args.dir)
    tensors = layout(int(args.gb * 1e9))
    t0 = time.perf_counter()
    for name, seed in (("rl", 1), ("sft", 2), ("base", 3)):
        if not (root / name / "model.safetensors.index.json").exists():
            write_checkpoint(root / name, tensors, seed)
    print(f"checkpoints: {len(tensors)} tensors, {sum(2 * torch.Size(s).numel() for _, s in tensors) / 1e9:.2f} GB each "
          f"(written in {time.perf_counter() - t0:.0f} s)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    print(f"{'method':7s} {'inputs':>7s} {'read s':>7s} {'merge s':>8s} {'merge GB/s':>10s} {'read GB/s':>9s} "
          f"{'peak RSS':>9s} {'import':>7s} {'largest':>8s} {'(peak-import)/largest':>21s}")
    for method in args.methods.split(","):
        inputs = [root / "rl", root / "sft"] + ([root / "base"] if method == "ties" else [])
        rt, nbytes = read_time(inputs)
        out = root / f"out-{method}"
        proc = subprocess.run([sys.executable, "-c", CHILD, str(root / "rl"), str(root / "sft"), str(root / "base"),
                               str(out), method], capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{method:7s} {len(inputs):7d} {rt:7.1f} {r['seconds']:8.1f} {nbytes / r['seconds'] / 1e9:10.2f} "
              f"{nbytes / rt / 1e9:9.2f} {r['peak_rss'] / 1e6:7.0f}MB {r['import_rss'] / 1e6:5.0f}MB "
              f"{r['largest'] / 1e6:6.0f}MB {(r['peak_rss'] - r['import_rss']) / r['largest']:21.2f}")
        shutil.rmtree(out, ignore_errors=True)
    print("merge GB/s counts the input bytes read; read GB/s is a plain sequential read of the same files "
          "(page cache warm after the first method)")


if __name__ == "__main__":
    main()
