"""Lint: `ruff check` (errors only: syntax, undefined and unused names; pyproject.toml [tool.ruff]) is clean."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.fail("ruff is not installed: it is in the test extra (pip install -e '.[test]')")


def test_ruff_check_is_clean():
    out = subprocess.run([*_ruff(), "check", "synergy", "scripts", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
