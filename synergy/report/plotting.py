"""Drawing primitives shared by every figure of synergy.report.figures: one colour and marker per arm across
all figures, panel grids, legends outside the data, the absent-arm note and the levels axis. Never imports torch.
"""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synergy.config import LEVELS
from synergy.io import atomic_path

ARM_COLOURS = {
    "base": "#555555",
    "sft-s1-gemini": "#6baed6", "sft-s1.1-r1": "#2171b5", "sft-eureka": "#08306b",
    "rl": "#d62728", "rl-nokl": "#ff9896", "rl-noeasy": "#ff7f0e",
    "twostage": "#8c564b", "interleaved": "#9467bd", "progressive": "#e377c2", "mixing": "#2ca02c",
}
MERGE_COLOUR = "#17becf"
METHOD_COLOURS = {"linear": "#1f77b4", "ties": "#d62728", "slerp": "#2ca02c"}
_MARKERS = "osD^vPX*h<>p"
_FALLBACK = ["#bcbd22", "#7f7f7f", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d"]

DYNAMICS = (("reward", "reward"), ("entropy", "entropy (nats / token)"),
            ("response_length", "response length (tokens)"), ("clip_ratio", "clip ratio"))
HYBRID_DYNAMICS = (("sft_loss", "SFT loss (zero-pass questions)"), ("prefix_fraction", "trace prefix share"))


def arm_colour(arm: str) -> str:
    """One colour per arm in every figure: fixed for the paper's arms, stable for any other name."""
    if arm in ARM_COLOURS:
        return ARM_COLOURS[arm]
    if arm.startswith("merge-"):
        return METHOD_COLOURS.get(arm.split("-")[1], MERGE_COLOUR)
    return _FALLBACK[zlib.crc32(arm.encode()) % len(_FALLBACK)]


def arm_marker(arm: str) -> str:
    names = list(ARM_COLOURS)
    i = names.index(arm) if arm in names else zlib.crc32(arm.encode())
    return _MARKERS[i % len(_MARKERS)]


# --------------------------------------------------------------------------- layout helpers


def _panels(n: int, ncols: int = 3, size: tuple[float, float] = (3.7, 2.9)) -> tuple[Figure, list, object | None]:
    """A figure with ``n`` panels on a grid; returns the spare grid cell's axes (for the legend) if any."""
    n = max(n, 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(size[0] * ncols + 0.4, size[1] * nrows + 1.0), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    spare = axes[n] if len(axes) > n else None
    for ax in axes[n + 1:]:
        ax.remove()
    if spare is not None:
        spare.set_axis_off()
    return fig, axes[:n], spare


def _legend(fig: Figure, handles: list, spare=None, title: str | None = None) -> None:
    """The legend in the spare grid cell, else below the panels; never on the data."""
    if not handles:
        return
    labels = [h.get_label() for h in handles]
    if spare is not None:
        spare.legend(handles, labels, loc="center", frameon=False, title=title, fontsize=9)
    else:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), 6), frameon=False,
                   title=title, fontsize=9)


def _arm_handle(arm: str, line: bool = True) -> Line2D:
    return Line2D([], [], color=arm_colour(arm), marker=arm_marker(arm), lw=1.5 if line else 0, label=arm)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 40)), ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])


def _finish(fig: Figure, caption: str, absent: Sequence[str], note: str, path: str | Path | None) -> Figure:
    """Caption on top, the absent arms / note at the bottom, then write the PDF (atomically, no timestamp)."""
    width = fig.get_figwidth()
    if caption:
        fig.suptitle("\n".join(textwrap.wrap(caption, int(width * 13))), fontsize=10.5)
    lines = []
    if absent:
        lines.append("Absent from this study (no data): " + ", ".join(absent))
    if note:
        lines.append(note)
    if lines:
        text = "\n".join(w for line in lines for w in textwrap.wrap(line, int(width * 15)))
        height = (0.2 * (text.count("\n") + 1) + 0.12) / fig.get_figheight()
        fig.get_layout_engine().set(rect=(0, height, 1, 1 - height))
        fig.text(0.01, 0.008, text, ha="left", va="bottom", fontsize=8, color="0.3", style="italic", gid="absent-note")
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    return fig


def _log_axis(axis) -> None:
    """Log scale with plain-number labels at 1-2-5 steps and unlabelled minor ticks (fewer, readable labels)."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def _level_x(ax) -> np.ndarray:
    x = np.arange(len(LEVELS))
    ax.set_xticks(x, LEVELS)
    ax.set_xlim(-0.5, len(LEVELS) - 0.5)
    ax.set_xlabel("difficulty level (L1 easiest)")
    return x


def _offsets(n: int, span: float = 0.5) -> np.ndarray:
    return np.zeros(1) if n <= 1 else np.linspace(-span / 2, span / 2, n)


def _by_level(df: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` of one arm's rows in L1..L5 order (NaN where a level has no row or no value)."""
    s = df.set_index("level")[column].reindex(list(LEVELS))
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def _benches(df: pd.DataFrame, benches: Sequence[str] | None) -> list[str]:
    have = list(dict.fromkeys(df["bench"])) if len(df) else []
    if benches:
        return [b for b in benches if b in have] + [b for b in have if b not in benches]
    return have


def _present(arms: Sequence[str], have) -> tuple[list[str], list[str]]:
    have = set(have)
    return [a for a in arms if a in have], [a for a in arms if a not in have]


# --------------------------------------------------------------------------- figures
