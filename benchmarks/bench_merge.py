"""Merging throughput and memory (synergy.merge, paper §3.3): native engine vs MergeKit, near the disk.

Two sizes (``--sizes``):

- ``7b``: two (three for TIES) synthetic sharded checkpoints of ``--gb`` GB each with LLaMA-7B
  tensor shapes (bf16, 1 GB shards): embeddings, ``--gb`` worth of decoder layers, final norm and
  ``lm_head``, with a LlamaForCausalLM ``config.json`` so MergeKit can read them too;
- ``tiny``: the default tiny Qwen2.5-VL (``TinyModelConfig``) and two perturbations of it (bf16).

For each method and backend (``--backends``: native, mergekit when ``SYNERGY_MERGEKIT_PYTHON`` or
this interpreter can import it) the inputs are first evicted from the page cache
(``posix_fadvise(DONTNEED)``) and read once sequentially: that cold read's rate is the disk-read
bandwidth, measured in the same run; they are evicted again and merged in a fresh child process.
Printed per row: the merge time and throughput (input bytes / second), its ratio to the disk-read
bandwidth, and the child's peak resident memory (VmHWM) above what importing takes, in units of
the largest tensor.

    python benchmarks/bench_merge.py --gb 2 --dir /tmp/merge-bench [--sizes 7b,tiny] [--backends native,mergekit]
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
from synergy.merge.mergekit_backend import mergekit_available, mergekit_config, mergekit_python  # noqa: E402

HIDDEN, INTER, VOCAB = 4096, 11008, 32000


def layout(total_bytes: int) -> list[tuple[str, tuple[int, ...]]]:
    """LLaMA-7B tensors (bf16): embeddings, decoder layers until ``total_bytes``, final norm and lm_head."""
    tensors = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    size = VOCAB * HIDDEN * 2
    layer = 0
    while size < total_bytes:
        p = f"model.layers.{layer}."
        for name, shape in [("self_attn.q_proj.weight", (HIDDEN, HIDDEN)), ("self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
                            ("self_attn.v_proj.weight", (HIDDEN, HIDDEN)), ("self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
                            ("mlp.gate_proj.weight", (INTER, HIDDEN)), ("mlp.up_proj.weight", (INTER, HIDDEN)),
                            ("mlp.down_proj.weight", (HIDDEN, INTER)), ("input_layernorm.weight", (HIDDEN,)),
                            ("post_attention_layernorm.weight", (HIDDEN,))]:
            tensors.append((p + name, shape))
            size += 2 * torch.Size(shape).numel()
        layer += 1
    return tensors + [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]


def llama_config(layers: int) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
            "intermediate_size": INTER, "num_hidden_layers": layers, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16",
            "max_position_embeddings": 4096, "tie_word_embeddings": False}


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
    layers = 1 + max(int(k.split(".")[2]) for k, _ in tensors if k.startswith("model.layers."))
    (folder / "config.json").write_text(json.dumps(llama_config(layers)))


def evict(folders) -> None:
    """Drop the files' pages from the page cache (clean pages; no privileges needed), so the next read hits the disk."""
    os.sync()
    for f in (f for d in folders for f in Path(d).glob("*.safetensors")):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_time(folders) -> tuple[float, int]:
    """A cold sequential read of every input shard: the disk-read bandwidth."""
    evict(folders)
    files = [f for d in folders for f in sorted(Path(d).glob("*.safetensors"))]
    t0, n = time.perf_counter(), 0
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(64 << 20):
                n += len(chunk)
    return time.perf_counter() - t0, n


# Peak memory is the child's VmHWM (/proc/self/status): the high-water mark of this process image only.
# (getrusage's ru_maxrss survives exec on Linux, so it would report the parent's RSS at fork time, i.e. the
# benchmark's own checkpoint writing.) "import" is the VmHWM right after the imports. The mergekit child
# runs in MergeKit's interpreter and calls MergeKit directly (as synergy.merge.mergekit_backend's child does).
CHILD = """
import json, sys, time

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

rl, sft, base, out, method, backend, cfg_path = sys.argv[1:8]
if backend == "native":
    from synergy.merge import MergeSettings, merge_models
else:
    import mergekit.merge
    from synergy.merge.mergekit_backend import _child
after_import = hwm()
t0 = time.perf_counter()
if backend == "native":
    s = merge_models(rl, sft, out, MergeSettings(method, 0.25), base_dir=base if method == "ties" else None)
else:
    _child(cfg_path, out, 0)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss": hwm(), "import_rss": after_import}))
"""


def tiny_arms(root: Path) -> None:
    """The default tiny Qwen2.5-VL (base) and two bf16 perturbations of it (rl, sft)."""
    from synergy.models import save_model
    from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer

    if (root / "sft" / "config.json").exists():
        return
    cfg = TinyModelConfig()
    tok = train_tokenizer(["How many red circles are there in the image? <think> 3 </think> \\boxed{3}"] * 50, 300)
    processor = build_processor(tok, cfg.image_size)
    model = build_tiny_model(cfg, tok).to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    for name, noise in (("base", 0.0), ("rl", 0.02), ("sft", 0.02)):
        m = build_tiny_model(cfg, tok).to(torch.bfloat16)
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            for p in m.parameters():
                p.add_((noise * torch.randn(p.shape, generator=g)).to(p.dtype))
        save_model(m, processor, root / name)


def largest_tensor(folder: Path) -> int:
    from synergy.merge import SafetensorsReader

    return max(r.nbytes(k) for f in folder.glob("*.safetensors") for r in [SafetensorsReader(f)] for k in r.keys())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0, help="size of each synthetic 7B-shaped checkpoint (GB)")
    ap.add_argument("--dir", default="/tmp/synergy-merge-bench")
    ap.add_argument("--sizes", default="7b,tiny")
    ap.add_argument("--methods", default="linear,slerp,ties")
    ap.add_argument("--backends", default="native,mergekit")
    ap.add_argument("--threads", type=int, default=0, help="threads of the merge (0: the CPUs this process may use)")
    args = ap.parse_args()
    backends = args.backends.split(",")
    if "mergekit" in backends and (why := mergekit_available()):
        print(f"mergekit backend skipped: {why}")
        backends.remove("mergekit")
    threads = args.threads or len(os.sched_getaffinity(0))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    print(f"{threads} threads; load average {os.getloadavg()[0]:.1f}\n")
    print("| size | method | backend | inputs GB | disk read GB/s | merge s | merge GB/s | of disk read | "
          "peak RSS MB | above import MB | largest tensor MB | (peak - import) / largest |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        root = Path(args.dir) / size
        if size == "7b":
            tensors = layout(int(args.gb * 1e9))
            for name, seed in (("rl", 1), ("sft", 2), ("base", 3)):
                if not (root / name / "model.safetensors.index.json").exists():
                    write_checkpoint(root / name, tensors, seed)
        else:
            tiny_arms(root)
        largest = largest_tensor(root / "rl")
        for method in args.methods.split(","):
            for backend in backends:
                from synergy.merge import MergeSettings

                inputs = [root / "rl", root / "sft"] + ([root / "base"] if method == "ties" else [])
                rt, nbytes = read_time(inputs)
                out = root / f"out-{method}-{backend}"
                cfg_path = root / f"mergekit-{method}.json"
                cfg_path.write_text(json.dumps(mergekit_config(root / "rl", root / "sft", MergeSettings(method, 0.25),
                                                               root / "base" if method == "ties" else None)))
                evict(inputs)
                py = sys.executable if backend == "native" else mergekit_python()
                proc = subprocess.run([py, "-c", CHILD, str(root / "rl"), str(root / "sft"), str(root / "base"),
                                       str(out), method, backend, str(cfg_path)], capture_output=True, text=True, env=env)
                if proc.returncode:
                    sys.exit(proc.stderr[-3000:])
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                disk, gbs = nbytes / rt / 1e9, nbytes / r["seconds"] / 1e9
                print(f"| {size} | {method} | {backend} | {nbytes / 1e9:.3f} | {disk:.2f} | {r['seconds']:.2f} | "
                      f"{gbs:.2f} | {gbs / disk:.2f} | {r['peak_rss'] / 1e6:.0f} | "
                      f"{(r['peak_rss'] - r['import_rss']) / 1e6:.0f} | {largest / 1e6:.1f} | "
                      f"{(r['peak_rss'] - r['import_rss']) / largest:.2f} |", flush=True)
                shutil.rmtree(out, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
