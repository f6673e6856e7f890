"""Re-grade kept samples without generating again (not a rule: run it by hand, then rerun Snakemake).

    python scripts/regrade.py [--only-failed] [--timeout-s N] [--dry-run] [SAMPLES.parquet ...]

Logic and the path schema it follows: synergy.regrade (docs/reliability.md, "Re-grading").
"""
import sys

from synergy.regrade import main

sys.exit(main(sys.argv[1:]))
