"""``python -m synergy.resources --configfile STUDY.yaml``: the GPU memory plan of every GPU job (synergy.memory_plan).

The study file is merged over config/config.yaml as Snakemake merges it. Exit status 1 when a job
will not fit on one GPU of ``--gpu-memory-gb`` GiB (default ``$SYNERGY_GPU_MEMORY_GB``, else 80);
docs/gpu.md "Memory plan".
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    from synergy.config import load_config_file
    from synergy.memory_plan import gpu_memory_gib, plan_study, report

    parser = argparse.ArgumentParser(prog="python -m synergy.resources",
                                     description="the GPU memory each GPU job of a study plans for")
    parser.add_argument("--configfile", required=True, help="the study config (merged over config/config.yaml)")
    parser.add_argument("--base", default=str(Path(__file__).resolve().parents[2] / "config/config.yaml"),
                        help="the config the study file is merged over (default: config/config.yaml)")
    parser.add_argument("--gpu-memory-gb", type=float, default=None, help="memory of one GPU in GiB")
    args = parser.parse_args(argv)
    study = load_config_file(args.base, args.configfile)
    plans = plan_study(study, gpu_memory_gib(args.gpu_memory_gb))
    print(report(plans))
    return 0 if all(p.fits for p in plans) else 1


if __name__ == "__main__":
    raise SystemExit(main())
