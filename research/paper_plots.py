"""The report's figures: grouped bars and lines, small PNGs (matplotlib's object API, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

SIZE = (7.0, 3.4)
DPI = 100


def bars(
    path: Path,
    title: str,
    ylabel: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    upper: Mapping[str, Sequence[float]] | None = None,
    points: Mapping[str, Sequence[Sequence[float]]] | None = None,
    log: bool = False,
) -> Path:
    """One bar per (group, series); `upper`: a whisker up to it (e.g. p90); `points`: dots."""
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        offset = x - 0.4 + width * (i + 0.5)
        heights = np.asarray(values, dtype=float)
        ax.bar(offset, heights, width * 0.9, label=name, color=f"C{i}", alpha=0.85)
        if upper and name in upper:
            tops = np.asarray(upper[name], dtype=float)
            ax.errorbar(
                offset,
                heights,
                yerr=[np.zeros_like(heights), np.maximum(tops - heights, 0)],
                fmt="none",
                ecolor="black",
                capsize=3,
                linewidth=1,
            )
        if points and name in points:
            for j, dots in enumerate(points[name]):
                ax.plot([offset[j]] * len(dots), dots, "k.", markersize=4, alpha=0.6)
    ax.set_xticks(x, list(groups))
    ax.set(ylabel=ylabel, title=title)
    if log:
        _log_y(ax)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    if len(series) > 1:  # beside the axes: bars may reach the top anywhere
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(path)
    return path


def lines(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    levels: Mapping[str, float] | None = None,
    log_y: bool = False,
) -> Path:
    """One line per series over `x` (log 2 axis), dashed horizontal `levels`."""
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(series.items()):
        ys = [np.nan if v is None else v for v in values]
        style = "--" if "p99" in name else "-"
        ax.plot(x, ys, style, marker="o", label=name, color=f"C{i // 2 if log_y else i}")
    for j, (name, level) in enumerate((levels or {}).items()):
        ax.axhline(level, color="gray", linestyle=":" if j else "--", label=name)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xticks(list(x))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_y:
        _log_y(ax)
    else:
        ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return path


def _log_y(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
