"""results/<study>/figures/all.pdf: the whole study in one PDF, tables and figures in the paper's order.

A title page (study, base model, benchmarks, arms, the config's hash, the date, the code version from
``git describe --always --dirty``, and the contents with page numbers), then every table of the study
rendered as a table (long tables in their wide layout, split over pages) and every figure, in the
paper's order (synergy.report.targets.REPORT_ORDER), each page with a one-line caption. Figures are
drawn again from the same tables as their own PDFs (synergy.report.figures.draw), so both always agree.
Uses matplotlib's PdfPages; never imports torch.
"""

from __future__ import annotations

import logging

import datetime as _dt
import math
import subprocess
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from synergy.io import atomic_path
from synergy.report import figures as F
from synergy.report.study_tables import md_title, report_layout

PAGE = (11.0, 8.5)          # landscape letter, inches
ROWS_PER_PAGE = 26


def code_version(repo: str | Path | None = None) -> str:
    """``git describe --always --dirty`` of the checkout this package runs from, or 'unknown'."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repo, capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _fmt(value, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:g}" if column == "sft_ratio" else f"{value:.1f}"
    return str(value)


def table_pages(df: pd.DataFrame, caption: str, note: str = "", rows_per_page: int = ROWS_PER_PAGE) -> list[Figure]:
    """One page per ``rows_per_page`` rows; the caption (and "(i/n)" when split) on top of each page."""
    n = max(1, math.ceil(len(df) / rows_per_page))
    cols = [str(c) for c in df.columns]
    cells = [[_fmt(v, c) for v, c in zip(row, cols)] for row in df.itertuples(index=False, name=None)]
    widths = [max([len(c), *(len(r[i]) for r in cells)] or [1]) + 2 for i, c in enumerate(cols)]
    widths = [w / sum(widths) for w in widths]
    pages = []
    for i in range(n):
        fig = Figure(figsize=PAGE)
        title = caption + (f" ({i + 1}/{n})" if n > 1 else "")
        lines = textwrap.wrap(title, 105)
        fig.text(0.04, 0.955, "\n".join(lines), ha="left", va="top", fontsize=11, weight="bold")
        top = 0.955 - 0.027 * len(lines) - 0.012
        if note:
            note_lines = textwrap.wrap(note, 170)
            fig.text(0.04, top, "\n".join(note_lines), ha="left", va="top", fontsize=9, color="0.3", style="italic")
            top -= 0.02 * len(note_lines) + 0.015
        ax = fig.add_axes((0.04, 0.04, 0.92, top - 0.04))
        ax.set_axis_off()
        chunk = cells[i * rows_per_page:(i + 1) * rows_per_page]
        if not chunk:
            ax.text(0.0, 0.95, "(no rows)", fontsize=10, color="0.35", va="top")
            pages.append(fig)
            continue
        height = min(1.0, (len(chunk) + 1) / (rows_per_page + 1))
        tbl = ax.table(cellText=chunk, colLabels=cols, colWidths=widths, cellLoc="center", bbox=(0, 1 - height, 1, height))
        tbl.auto_set_font_size(False)
        tbl.set_fontsize(8 if len(cols) <= 10 else 7)
        for (r, _), cell in tbl.get_celld().items():
            cell.set_edgecolor("0.75")
            if r == 0:
                cell.set_facecolor("#e8e8e8")
                cell.set_text_props(weight="bold")
        pages.append(fig)
    return pages


def _table_page_count(rows: int, rows_per_page: int = ROWS_PER_PAGE) -> int:
    return max(1, math.ceil(rows / rows_per_page))


def title_page(info: Mapping, contents: Sequence[tuple[int, str]]) -> Figure:
    """Study facts on the left, contents (page, caption) on the right."""
    fig = Figure(figsize=PAGE)
    fig.text(0.05, 0.93, f"synergy: {info.get('study', '?')} study", fontsize=22, weight="bold", va="top")
    fig.text(0.05, 0.875, "The Synergy Dilemma of Long-CoT SFT and RL (arXiv 2507.07562), reproduced as a workflow",
             fontsize=11, va="top", color="0.25")
    facts = [("base model", info.get("base_model", "?")),
             ("benchmarks", ", ".join(info.get("benchmarks", []))),
             ("arms", ", ".join(info.get("arms", []))),
             ("config hash", info.get("config_hash", "?")),
             ("date", info.get("date", "?")),
             ("code version", info.get("code_version", "unknown"))]
    y = 0.80
    for key, value in facts:
        lines = textwrap.wrap(str(value), 58) or [""]
        fig.text(0.05, y, key, fontsize=10, weight="bold", va="top")
        fig.text(0.17, y, "\n".join(lines), fontsize=10, va="top", family="monospace" if key in ("config hash", "code version") else None)
        y -= 0.035 * len(lines) + 0.02
    fig.text(0.56, 0.80, "contents", fontsize=10, weight="bold", va="top")
    size = 8.5 if len(contents) <= 30 else 7
    step = 0.024 if len(contents) <= 30 else 0.019
    for i, (page, caption) in enumerate(contents):
        short = caption if len(caption) <= 70 else caption[:67] + "..."
        fig.text(0.56, 0.77 - i * step, f"{page:>3}  {short}", fontsize=size, va="top")
    return fig


def read_table(item: Mapping) -> pd.DataFrame:
    csv = Path(item["csv"])
    if not csv.exists():
        raise FileNotFoundError(f"table {item['name']!r} of the report is missing: {csv}")
    return pd.read_csv(csv)


def build_report(path: str | Path, info: Mapping, items: Sequence[Mapping]) -> int:
    """Write the report to ``path``; returns the number of pages.

    ``items`` (synergy.report.targets.report_items) are tables ``{type, name, csv, md}`` and figures
    ``{type, name, spec, inputs}`` in page order; ``info`` the title-page facts (targets.title_info) —
    the date and code version are filled in here when missing.
    """
    info = {"date": _dt.date.today().isoformat(), "code_version": code_version(), **info}
    prepared = []  # (caption, pages factory, page count)
    for item in items:
        if item["type"] == "table":
            df = read_table(item)
            shown, note = report_layout(item["name"], df)
            caption = md_title(item["md"], item["name"])
            prepared.append((caption, ("table", shown, note), _table_page_count(len(shown))))
        elif item["type"] == "figure":
            spec = item["spec"]
            prepared.append((spec.get("caption") or item["name"], ("figure", spec, item.get("inputs", {})), 1))
        else:
            raise ValueError(f"report item {item.get('name')!r} has an unknown type {item.get('type')!r}")
    contents, page = [], 2
    for caption, _, count in prepared:
        contents.append((page, caption))
        logging.getLogger("synergy.report").info("page %d: %s", page, caption)
        page += count
    pages = 0
    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"Title": f"synergy: {info.get('study')}",
                                                          "CreationDate": None, "ModDate": None}) as pdf:
        pdf.savefig(title_page(info, contents))
        pages += 1
        for caption, (kind, a, b), _ in prepared:
            if kind == "table":
                for fig in table_pages(a, caption, b):
                    pdf.savefig(fig)
                    pages += 1
            else:
                fig = F.draw(a, F.read_inputs(a["kind"], b))
                pdf.savefig(fig)
                pages += 1
    return pages
