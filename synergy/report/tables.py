"""Write a table as CSV and as a Markdown file next to it (``results/tables/{table}.csv`` + ``.md``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from synergy.io import write_text


def to_markdown(df: pl.DataFrame, float_digits: int = 1) -> str:
    """A GitHub-flavoured Markdown table (floats rounded to ``float_digits``)."""
    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.{float_digits}f}"
        return str(v)

    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([head, sep, *body]) + "\n"


def write_table(df: pl.DataFrame, csv_path: str | Path, md_path: str | Path | None = None, title: str = "") -> None:
    """CSV for machines, Markdown for people; both written atomically."""
    csv_path = Path(csv_path)
    write_text(df.write_csv(), csv_path)
    md_path = Path(md_path) if md_path else csv_path.with_suffix(".md")
    write_text((f"# {title}\n\n" if title else "") + to_markdown(df), md_path)
