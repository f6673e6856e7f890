"""Reading a dataset directory in its published layout, for every loader.

A dataset directory is what ``huggingface_hub.snapshot_download`` leaves (rule ``download_dataset``)
or a local copy of it (``local_path``): parquet, JSON or JSON-lines files, with images either
embedded (the ``datasets`` Image feature, stored as a struct ``{bytes, path}``) or as paths relative
to the directory, possibly inside a zip archive next to the data (``images.zip``).

Every loader turns one source record into one canonical row (``synergy/data/schema.py``). A record
that cannot be converted raises ``RowProblem``; the reading loop adds the row id and the file to the
message (``DataError``), or, with ``on_bad_row: skip``, counts and reports it instead. Nothing is
dropped silently: ``LoadResult.skipped`` and ``LoadResult.notes`` go to the rule's log.
"""

from __future__ import annotations

import json
import logging
import random
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synergy.data.schema import OPTION_LETTERS, DataError, validate_row

log = logging.getLogger("synergy.data.loaders")

DATA_SUFFIXES = (".parquet", ".json", ".jsonl")


class RowProblem(ValueError):
    """One source record cannot be converted; the reading loop names the row and the file."""


@dataclass
class LoadResult:
    """Canonical rows of one set, plus what was skipped (``on_bad_row: skip``) and counted notes."""

    rows: list[dict]
    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (row id, reason)
    notes: Counter = field(default_factory=Counter)                 # e.g. "open answer with 2 accepted answers"

    def summary(self) -> str:
        parts = [f"{len(self.rows)} rows from {len(self.files)} file(s)"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        parts += [f"{k}: {v}" for k, v in sorted(self.notes.items())]
        return "; ".join(parts)


# --------------------------------------------------------------------------- files


def find_files(root: str | Path, patterns: Sequence[str]) -> list[Path]:
    """Data files under ``root`` matching any glob (``**`` allowed), sorted; none -> error listing the files there."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset directory {root} does not exist (set `local_path`, or let rule download_dataset "
                        f"fetch `source`)")
    found = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file() and p.suffix in DATA_SUFFIXES})
    if not found:
        present = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
        shown = present[:25] + ([f"... {len(present) - 25} more"] if len(present) > 25 else [])
        raise DataError(f"no data file in {root} matches {list(patterns)}; files there: {shown or 'none'} "
                        f"(set `files:` to the right glob, or `split:`)")
    return found


def columns_of(path: Path) -> list[str]:
    """Column names of a data file (parquet: its schema; JSON: keys of the first 100 records)."""
    if path.suffix == ".parquet":
        return list(pq.read_schema(path).names)
    keys: dict[str, None] = {}
    for i, rec in enumerate(read_records(path)):
        keys.update(dict.fromkeys(rec))
        if i >= 100:
            break
    return list(keys)


def read_records(path: Path) -> Iterator[dict]:
    """Records of a parquet / JSON (list, or object of id -> record) / JSON-lines file, as dicts."""
    if path.suffix == ".parquet":
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=256):
            yield from batch.to_pylist()
    elif path.suffix == ".jsonl":
        with path.open() as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path} line {n}: not JSON ({exc})") from exc
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not JSON ({exc})") from exc
        if isinstance(data, Mapping) and all(isinstance(v, Mapping) for v in data.values()):
            for key, rec in data.items():  # MathVista's annot_*.json layout: {pid: record}
                yield {"_key": key, **rec}
        elif isinstance(data, list):
            yield from data
        else:
            raise DataError(f"{path}: expected a list of records or an object of records")
    else:
        raise DataError(f"{path}: unsupported data file type {path.suffix!r}")


def require_columns(columns: Sequence[str], needed: Sequence[str], path: Path, loader: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(f"{path}: loader {loader!r} needs column(s) {missing}, which the file lacks; "
                        f"columns present: {sorted(columns)}")


# --------------------------------------------------------------------------- images


class ImageResolver:
    """Image bytes from a record's image field: embedded bytes, a path in the directory, or a zip member."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._zip_index: dict[str, tuple[zipfile.ZipFile, str]] | None = None
        self._base_index: dict[str, list[tuple[zipfile.ZipFile, str]]] = {}

    def __call__(self, value: Any) -> bytes | None:
        """Bytes of one image value (None when the value is empty); RowProblem when it cannot be found."""
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, Mapping):  # datasets' Image feature: {"bytes": ..., "path": ...}
            if value.get("bytes"):
                return bytes(value["bytes"])
            return self(value.get("path")) if value.get("path") else None
        if isinstance(value, str):
            return self._from_path(value) if value.strip() else None
        raise RowProblem(f"image value of type {type(value).__name__} is neither bytes, a path nor an Image struct")

    def _from_path(self, rel: str) -> bytes:
        rel = rel.strip().lstrip("./")
        for cand in (self.root / rel, self.root / "images" / Path(rel).name):
            if cand.is_file():
                return cand.read_bytes()
        index = self._zips()
        key = rel.replace("\\", "/")
        hit = index.get(key) or index.get(key.split("/", 1)[-1])
        if hit is None:
            matches = self._base_index.get(Path(key).name, [])
            hit = matches[0] if len(matches) == 1 else None
        if hit is None:
            zips = sorted({z.filename for z, _ in index.values()}) if index else []
            raise RowProblem(f"image {rel!r} not found under {self.root} (no such file; zip archives searched: "
                             f"{[Path(z).name for z in zips] or 'none'}; add the archive to `files:` so it is "
                             f"downloaded)")
        zf, member = hit
        return zf.read(member)

    def _zips(self) -> dict[str, tuple[zipfile.ZipFile, str]]:
        if self._zip_index is None:
            self._zip_index = {}
            for zpath in sorted(self.root.rglob("*.zip")):
                zf = zipfile.ZipFile(zpath)
                for member in zf.namelist():
                    if member.endswith("/"):
                        continue
                    self._zip_index.setdefault(member, (zf, member))
                    self._base_index.setdefault(Path(member).name, []).append((zf, member))
        return self._zip_index


# --------------------------------------------------------------------------- answers and options


_INT_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_FLOAT_RE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z '\-]*")


def infer_answer_type(answer: str) -> str:
    """integer / float / text (plain words) / expression (anything mathematical) for a free-form answer."""
    s = answer.strip().strip("$").strip()
    if _INT_RE.fullmatch(s):
        return "integer"
    if _FLOAT_RE.fullmatch(s):
        return "float"
    if _WORD_RE.fullmatch(s) and len(s) > 1:
        return "text"
    return "expression"


_CHOICES_HEAD_RE = re.compile(r"(?:^|\n)\s*(?:Choices|Options)\s*[:：]", re.I)
_LINE_OPTION_RE = re.compile(r"^\s*\(?([A-Z])\s*[.:：)]\s*(.*)$")


def split_embedded_options(text: str) -> tuple[str, list[str]] | None:
    """(stem, options) of a question whose text lists its options after "Choices:" / "Options:".

    Accepts one option per line ("A:40°", "(B) 50", "C. 60") and one line of comma-separated options
    ("Options: A: x, B: y, C: z" as in MMStar); without a head, option lines ending the text. Letters
    must run A, B, C, ... from A with at least two options; otherwise None (the caller decides).
    """
    heads = list(_CHOICES_HEAD_RE.finditer(text))
    if not heads:
        return _trailing_option_lines(text)
    head = heads[-1]
    stem, block = text[: head.start()].rstrip(), text[head.end():]
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    by_line = [_LINE_OPTION_RE.match(ln) for ln in lines]
    if len(lines) >= 2 and all(by_line) and _consecutive([m.group(1) for m in by_line]):
        return stem, [m.group(2).strip() for m in by_line]
    return _comma_options(stem, block.strip())


def _trailing_option_lines(text: str) -> tuple[str, list[str]] | None:
    """Options as the last lines of a question without a "Choices:" head ("...?\nA. 1/2\nB. 2/3")."""
    lines = text.rstrip().splitlines()
    run: list[re.Match] = []
    for ln in reversed(lines):
        m = _LINE_OPTION_RE.match(ln)
        if not m or not m.group(2).strip():
            break
        run.insert(0, m)
    if len(run) < 2 or not _consecutive([m.group(1) for m in run]) or len(run) == len(lines):
        return None
    return "\n".join(lines[: len(lines) - len(run)]).rstrip(), [m.group(2).strip() for m in run]


def _consecutive(letters: Sequence[str]) -> bool:
    return list(letters) == list(OPTION_LETTERS[: len(letters)])


def _comma_options(stem: str, block: str) -> tuple[str, list[str]] | None:
    """Options written on one line, "A: x, B: y, C: z" (MMStar's layout).

    The block must start with ``A`` and a separator (``:``, ``.`` or ``)``); every later option starts
    only at a comma followed by the next letter and the *same* separator (", B:"), so a letter with a
    separator inside an option's text ("A: Vitamin B. rich bread, B: ...") never starts an option.
    """
    first = re.match(r"A\s*([:.)])\s*", block)
    if not first:
        return None
    sep = re.escape(first.group(1))
    starts = [first]
    for letter in OPTION_LETTERS[1:]:
        m = re.compile(rf",\s*{letter}\s*{sep}\s*").search(block, starts[-1].end())
        if not m:
            break
        starts.append(m)
    if len(starts) < 2:
        return None
    options = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(block)
        options.append(block[m.end(): end].strip().rstrip(",;").strip())
    if any(not o for o in options):
        return None
    return stem, options


def letter_options(answer_letter: str, minimum: int = 4) -> list[str]:
    """Placeholder options A.. for a multiple-choice question whose options are only in the image."""
    n = max(minimum, OPTION_LETTERS.index(answer_letter) + 1)
    return list(OPTION_LETTERS[:n])


def option_letter(answer: str, options: Sequence[str]) -> str:
    """The letter of ``answer`` given as an option's text (MathVista) or as a letter; RowProblem if neither."""
    a = answer.strip()
    if a in options:
        return OPTION_LETTERS[list(options).index(a)]
    norm = [re.sub(r"\s+", " ", o.strip().lower()) for o in options]
    if re.sub(r"\s+", " ", a.lower()) in norm:
        return OPTION_LETTERS[norm.index(re.sub(r"\s+", " ", a.lower()))]
    if len(a) == 1 and a.upper() in OPTION_LETTERS[: len(options)]:
        return a.upper()
    raise RowProblem(f"answer {answer!r} is neither one of the options {list(options)} nor an option letter")


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, or None."""
    found = None
    for m in _BOX_RE.finditer(text or ""):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0 and text[m.end(): i - 1].strip():
            found = text[m.end(): i - 1].strip()
    return found


# --------------------------------------------------------------------------- paper difficulty tags

_LEVEL_TAG_RE = re.compile(r"(?:l|level)?\s*[_\- ]?\s*([1-5])", re.I)


def paper_level_tag(value: Any, fmt: str) -> dict:
    """meta fields for one difficulty tag: ``{"paper_level": "L3"}`` (format level) or ``{"paper_passes": 7}``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, bool) or not str(value).strip():
        raise RowProblem(f"the difficulty tag is empty or not a value ({value!r})")
    text = str(value).strip()
    if fmt == "passes":
        if not re.fullmatch(r"\d+", text):
            raise RowProblem(f"difficulty tag {value!r} is not a pass count (level_format: passes)")
        return {"paper_passes": int(text)}
    m = _LEVEL_TAG_RE.fullmatch(text)
    if not m:
        raise RowProblem(f"difficulty tag {value!r} is not a level 1-5 / L1-L5 (level_format: passes reads pass counts)")
    return {"paper_level": f"L{m.group(1)}"}


# --------------------------------------------------------------------------- the reading loop


@dataclass
class Context:
    """What a converter needs besides the record: the set, its options, images and a place for notes."""

    name: str
    spec: Mapping[str, Any]
    path: Path
    images: ImageResolver
    notes: Counter


Converter = Callable[[dict, Context], dict]


def load_rows(root: str | Path, spec: Mapping[str, Any], patterns: Sequence[str], *, loader: str,
              needed: Sequence[str], convert: Converter, raw_id: Callable[[dict, int, Path], str],
              seed: int = 0) -> LoadResult:
    """Read every matching file, convert each record, validate; bad rows raise (or are skipped and counted)."""
    root = Path(root)
    on_bad = spec.get("on_bad_row") or "raise"
    files = find_files(root, patterns)
    images = ImageResolver(root)
    result = LoadResult(rows=[], files=[str(f.relative_to(root)) for f in files])
    seen: set[str] = set()
    where = dict(spec.get("where") or {})
    level_col = spec.get("level_column") if spec.get("levels") == "paper" else None
    for path in files:
        cols = columns_of(path)
        require_columns(cols, [*needed, *where, *([level_col] if level_col else [])], path, loader)
        ctx = Context(spec["name"], spec, path, images, result.notes)
        for i, rec in enumerate(read_records(path)):
            if where and not all(str(rec.get(k)) in {str(v) for v in vals} for k, vals in where.items()):
                continue
            rid = f"{spec['name']}/{raw_id(rec, i, path)}"
            try:
                row = convert(rec, ctx)
                row["id"] = rid
                if level_col:
                    meta = json.loads(row["meta"])
                    meta.update(paper_level_tag(rec.get(level_col), spec.get("level_format") or "level"))
                    row["meta"] = json.dumps(meta, sort_keys=True)
                validate_row(row, str(path))
                if rid in seen:
                    raise RowProblem("duplicate question id")
            except (RowProblem, DataError) as exc:
                msg = str(exc).split(": ", 1)[-1] if isinstance(exc, DataError) else str(exc)
                if on_bad == "skip":
                    result.skipped.append((rid, msg))
                    continue
                raise DataError(f"row id={rid!r} in {path}: {msg}") from exc
            seen.add(rid)
            result.rows.append(row)
    if not result.rows:
        raise DataError(f"no rows loaded for {spec['name']!r} from {root} (files {result.files}; "
                        f"where {where or 'none'}; {len(result.skipped)} skipped)")
    n = spec.get("num_questions")
    if n and n < len(result.rows):
        result.notes[f"subsampled to num_questions={n} of {len(result.rows)}"] += 1
        result.rows = subsample(result.rows, n, seed, spec["name"])
    return result


def subsample(rows: list[dict], n: int, seed: int, name: str) -> list[dict]:
    """``n`` rows drawn without replacement, deterministic from (seed, name), in their original order."""
    rng = random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))
    keep = set(rng.sample(range(len(rows)), n))
    return [r for i, r in enumerate(rows) if i in keep]


def meta_json(**fields) -> str:
    """A row's meta: the source's own fields (None and empty values dropped), JSON with sorted keys."""
    clean = {k: v for k, v in fields.items() if v not in (None, "", [], {})}
    return json.dumps(clean, sort_keys=True, default=str)
