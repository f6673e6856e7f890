"""Every reference in the repository's code, config and docs resolves to a file of the repository.

A user's copy must explain itself: a docstring, comment or doc that points at a file points at one
that ships (``docs/paper.md``, ``synergy/train/grpo/loop.py``, ``[docs/slurm.md](docs/slurm.md)``), and
nothing points at the developers' private notes, a design page outside the repository, a machine
path or an issue number. What counts as a reference:

* a path whose first part is a top-level folder of the repository (``synergy/...``, ``docs/...``,
  ``config/...``; a ``../`` in front, as rules write it, is allowed);
* a Markdown path (``docs/x.md``, ``../README.md``) or a capitalised top-level page (``README.md``),
  resolved against the repository root or the referring file's folder; a bare lower-case name of a
  page of ``docs/`` without its folder (``paper.md``) is ambiguous and refused (a quoted name is a
  path part in code, ``ROOT / "docs" / "gpu.md"``, and is let through);
* a test module named alone (``test_grpo.py::test_x``), resolved under ``tests/``.

Paths with placeholders (``{arm}``, ``<name>``, ``*``) are patterns, not files, and are skipped.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_DIRS = ("synergy", "scripts", "rules", "config", "docs", "tests", "benchmarks", "envs", "profiles", ".ci")
TOP_FILES = ("README.md", "DEVELOPERS.md", "Makefile", "Snakefile", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".smk", ".sh", ".toml", ".cfg", ".txt", ".json", ""}

# Spelled in pieces so that this file does not match itself.
FORBIDDEN = {
    "the developers' private notes": re.compile("notes" + r"/[\w.-]*"),
    "a design page outside the repository": re.compile("DESIGN" + r"\.md"),
    "a machine path": re.compile(r"/" + "work" + r"/"),
    "an issue number": re.compile("(?i)" + r"\bissue" + r"[\s-]*#?\d+"),
}
PATH_RE = re.compile(r"(?<![\w/.-])(?:\.\./)*((?:%s)/[\w./{}<>*-]*[\w/}>*])" % "|".join(re.escape(d) for d in TOP_DIRS))
MD_RE = re.compile(r"(?<![\w/.}>-])((?:[\w.-]*/)+[\w-]+\.md|[A-Z]+\.md)\b")
BARE_DOC_RE = re.compile(r"(?<![\w/.'\"-])((?:paper|ecosystem|tinyvlm|tiny-model|slurm|style|gpu|reliability)\.md)\b")
OUTPUTS = ("results/", "logs/", "resources/", ".snakemake/")
TEST_RE = re.compile(r"(?<![\w/.-])(test_\w+\.py)(?=::|\b)")
PLACEHOLDER = re.compile(r"[{}<>*]")


def tracked_files() -> list[Path]:
    """The repository's text files (``git ls-files`` when this is a checkout, else every file but caches)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True)
        names = [n for n in out.stdout.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".snakemake", "results", "logs", "resources", "__pycache__", ".pytest_cache"}
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]
    return [ROOT / n for n in sorted(names) if (ROOT / n).suffix in TEXT_SUFFIXES and (ROOT / n).is_file()]


def exists(ref: str, referrer: Path) -> bool:
    ref = ref.rstrip("/.")
    return (ROOT / ref).exists() or (referrer.parent / ref).exists()


def problems_in(path: Path, text: str) -> list[str]:
    """Every broken or forbidden reference of one file, as ``file:line: what``."""
    rel = path.relative_to(ROOT)
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for what, pattern in FORBIDDEN.items():
            for m in pattern.finditer(line):
                out.append(f"{rel}:{lineno}: names {what}: {m.group(0)!r}")
        for m in BARE_DOC_RE.finditer(line):
            out.append(f"{rel}:{lineno}: names {m.group(1)!r} without its folder (docs/{m.group(1)}?)")
        refs = [m.group(1) for m in PATH_RE.finditer(line)] + [m.group(1) for m in MD_RE.finditer(line)]
        for ref in refs:
            if PLACEHOLDER.search(ref) or ref.startswith(("http", "www.") + OUTPUTS):
                continue
            if not exists(ref, path):
                out.append(f"{rel}:{lineno}: refers to {ref!r}, which is not in the repository")
        for m in TEST_RE.finditer(line):
            if not (ROOT / "tests" / m.group(1)).exists() and not exists(m.group(1), path):
                out.append(f"{rel}:{lineno}: refers to test module {m.group(1)!r}, which is not in tests/")
    return out


def test_the_checker_finds_broken_and_forbidden_references(tmp_path):
    probe = ROOT / "docs" / "probe.md"  # a name to resolve against; the file is never written
    text = ("see docs/paper.md and [x](docs/slurm.md), synergy/train/grpo/loop.py, rules/../scripts/train_sft.py\n"
            "see docs/missing.md and synergy/nowhere.py; results/eval/{arm}/{bench}.parquet is a pattern\n"
            "facts in " + "notes/paper.md, " + "DESIGN" + ".md §2, /" + "work/shared, the " + "issue 5 note\n"
            "test_grpo.py::test_drop_easy_questions and test_nothing.py::test_x\n"
            "ecosystem.md §6 pitfall 10; results/tables/x.md is an output; README.md\n")
    found = problems_in(probe, text)
    assert not [p for p in found if ":1:" in p], found
    assert any("docs/missing.md" in p for p in found) and any("synergy/nowhere.py" in p for p in found)
    assert sum(":3:" in p for p in found) >= 4, found
    assert any("test_nothing.py" in p for p in found) and not any("test_grpo.py" in p for p in found)
    assert [p for p in found if ":5:" in p] == ["docs/probe.md:5: names 'ecosystem.md' without its folder "
                                                "(docs/ecosystem.md?)"], found


def test_every_reference_resolves():
    files = [f for f in tracked_files() if f != Path(__file__).resolve()]  # this file's examples are broken on purpose
    assert any(f.name == "README.md" for f in files) and len(files) > 100
    problems = [p for f in files for p in problems_in(f, f.read_text(errors="replace"))]
    assert not problems, f"{len(problems)} broken or forbidden references:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", ["docs/paper.md", "docs/tiny-model.md", "docs/ecosystem.md", "docs/slurm.md"])
def test_cited_sections_exist(doc):
    """A citation ``docs/x.md §N`` names a section N that the page has (``## N. ...``)."""
    sections = set(re.findall(r"^## (\d+)\.", (ROOT / doc).read_text(), re.M))
    cite = re.compile(re.escape(doc) + r"((?:,?\s+§\d+(?:,\s+item\s+\d+)?)+)")  # may wrap onto the next line
    missing, cited = [], 0
    for f in tracked_files():
        if f == Path(__file__).resolve():
            continue
        text = f.read_text(errors="replace")
        for m in cite.finditer(text):
            for n in re.findall(r"§(\d+)", m.group(1)):
                cited += 1
                if n not in sections:
                    missing.append(f"{f.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {doc} §{n}")
    assert not missing, f"sections cited but not in {doc} (it has {sorted(sections, key=int)}):\n" + "\n".join(missing)
    assert cited or doc == "docs/slurm.md", f"nothing cites a section of {doc}"
