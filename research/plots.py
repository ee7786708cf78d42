"""The figures of the experiments and of the report (matplotlib's object API, Agg),
on the axis helpers of the load tool's figures (autodep.loadtest.plots).

Experiments (`research.experiments`):

pools_figure        per-second p99 latency against the SLO (top), and live
                    workers of each configuration against the offered load (bottom)
reaction_figure     workers (live, busy, desired) polled from /status around
                    step bursts, with each burst's decision, ready and first-served times
cold_figure         the cold request against the warm ones, per repetition
alternating_figure  two models' live workers (stacked, against the shared budget)
                    and offered loads (top), and each request's latency (bottom)

The report (`research.paper`), small PNGs:
bars                grouped bars, with whiskers or dots
lines               one line per series over a log-2 x axis, with levels
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from autodep.loadtest import stats
from autodep.loadtest.plots import log_scale
from autodep.loadtest.records import RequestRecord, ServerSample
from research.status import Poll, Reaction, live_series

WIDTH = 10.0
DPI = 110
REPORT_SIZE = (7.0, 3.4)  # the report's bars and lines
REPORT_DPI = 100
LOAD_COLOUR = "tab:purple"
CONFIG_STYLES = {  # label prefix → (colour, line style, width)
    "autoscaler": ("tab:blue", "-", 2.2),
    "fixed-1": ("tab:orange", "--", 1.6),
    "fixed-2": ("tab:green", ":", 1.8),
}


@dataclass(frozen=True)
class RunView:
    label: str
    records: Sequence[RequestRecord]
    samples: Sequence[ServerSample]


def pools_figure(
    path: Path, title: str, runs: Sequence[RunView], slo_ms: float, duration: float
) -> Path:
    fig = Figure(figsize=(WIDTH, 7.0), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.0, 1.0])
    along_top = top.get_xaxis_transform()  # x in data, y in axes fractions
    for i, run in enumerate(runs):
        colour, style, width = _style(run.label)
        seconds, p99, failed = per_second_p99(run.records, duration)
        top.step(
            seconds,
            p99,
            where="post",
            color=colour,
            linestyle=style,
            linewidth=width,
            label=f"{run.label} p99",
        )
        bad = failed > 0
        if bad.any():
            top.plot(
                seconds[bad] + 0.5,
                np.full(bad.sum(), 0.97 - 0.04 * i),
                "x",
                color=colour,
                markersize=6,
                transform=along_top,
                label=f"{run.label}: requests failed (sent that second)",
            )
        series = stats.totals(run.samples) if run.samples else None
        if series is not None:
            bottom.step(
                series["t"],
                series["live"],
                where="post",
                color=colour,
                linestyle=style,
                linewidth=width,
                label=f"{run.label} live workers",
            )
    top.axhline(slo_ms, color="tab:red", linewidth=1, label=f"SLO {slo_ms:g} ms")
    log_scale(top)
    low, high = top.get_ylim()
    top.set_ylim(low, high * 2.5)  # headroom for the failure marks along the top
    top.set(ylabel="p99 latency of 200s (ms)", title=title)
    top.grid(True, which="both", alpha=0.3)
    _legend(top, where="upper")
    bottom.set(xlabel="time (s)", ylabel="live workers", ylim=(0, 3.2))
    bottom.set_yticks([0, 1, 2, 3])
    bottom.grid(True, alpha=0.3)
    load = _offered(bottom, runs[0].records if runs else [], duration)
    _legend(bottom, load, where="lower")
    return _save(fig, path)


def per_second_p99(
    records: Sequence[RequestRecord], duration: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """By send second: p99 latency (ms) of the 200 answers (nan: none), and failures."""
    bins = max(1, int(np.ceil(duration)))
    p99 = np.full(bins, np.nan)
    failed = np.zeros(bins, dtype=int)
    by_second: list[list[float]] = [[] for _ in range(bins)]
    for r in records:
        second = min(bins - 1, max(0, int(r.sent_s)))
        if r.ok:
            by_second[second].append(r.latency_s * 1e3)
        else:
            failed[second] += 1
    for second, values in enumerate(by_second):
        if values:
            p99[second] = np.percentile(values, 99)
    return np.arange(bins, dtype=float), p99, failed


def reaction_figure(
    path: Path,
    records: Sequence[RequestRecord],
    polls: Sequence[Poll],
    model: str,
    reactions: Sequence[Reaction],
    duration: float,
) -> Path:
    fig = Figure(figsize=(WIDTH, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    times, live, busy = live_series(polls, model)
    desired = [p.models.get(model, {}).get("desired_workers", np.nan) for p in polls]
    ax.step(times, live, where="post", color="tab:green", linewidth=2, label="live workers")
    ax.step(times, busy, where="post", color="tab:blue", linewidth=1, label="busy workers")
    ax.step(
        times, desired, where="post", color="black", linestyle="--", linewidth=1, label="desired"
    )
    marks = [
        ("decision_s", "^", "decision"),
        ("ready_s", "o", "new worker ready"),
        ("served_s", "*", "new worker served"),
    ]
    for i, r in enumerate(reactions):
        ax.axvline(
            r.at, color="grey", linewidth=1, alpha=0.6, label="burst start" if i == 0 else None
        )
        for attribute, marker, name in marks:
            delay = getattr(r, attribute)
            if delay is not None:
                ax.plot(
                    r.at + delay,
                    r.live_before + 1.15,
                    marker,
                    color="tab:red",
                    markersize=8,
                    label=name if i == 0 else None,
                )
    ax.set(
        xlabel="time (s)",
        ylabel="workers (from /status)",
        ylim=(0, 3.2),
        title="Burst reaction: workers around each step burst",
    )
    ax.set_yticks([0, 1, 2, 3])
    ax.grid(True, alpha=0.3)
    load = _offered(ax, records, duration)
    _legend(ax, load)
    return _save(fig, path)


@dataclass(frozen=True)
class ColdPoint:
    label: str  # "boot" for the first request after the server started, else the repetition
    cold_ms: float
    warm_ms: Sequence[float]


def cold_figure(path: Path, points: Sequence[ColdPoint]) -> Path:
    fig = Figure(figsize=(WIDTH * 0.7, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(points))
    ax.plot(
        x,
        [p.cold_ms for p in points],
        "o",
        color="tab:red",
        markersize=8,
        label="cold: first request, no worker",
    )
    for i, p in enumerate(points):
        ax.plot(
            np.full(len(p.warm_ms), i),
            p.warm_ms,
            "_",
            color="tab:blue",
            markersize=14,
            label="warm: the requests after it" if i == 0 else None,
        )
    ax.set_xticks(x, [p.label for p in points])
    log_scale(ax)
    ax.set(
        xlabel="repetition",
        ylabel="latency (ms)",
        title="Cold start from zero workers against warm requests",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def alternating_figure(
    path: Path,
    records: Sequence[RequestRecord],
    polls: Sequence[Poll],
    models: Sequence[str],
    budget: int,
    slo_ms: float,
    duration: float,
) -> Path:
    fig = Figure(figsize=(WIDTH, 7.0), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    times = [p.t for p in polls]
    lives = [live_series(polls, m)[1] for m in models]
    if times:
        top.stackplot(
            times,
            *lives,
            labels=[f"{m}: live workers" for m in models],
            colors=[colours[m] for m in models],
            step="post",
            alpha=0.55,
        )
        top.step(
            times,
            np.sum(lives, axis=0),
            where="post",
            color="black",
            linewidth=1,
            label="all models",
        )
    top.axhline(
        budget, color="tab:red", linestyle="--", linewidth=1, label=f"--max-total-workers {budget}"
    )
    top.set(
        ylabel="workers (from /status)",
        ylim=(0, budget + 1.5),
        title="Two models, alternating bursts, one budget",
    )
    top.grid(True, alpha=0.3)
    load = top.twinx()
    end = max([duration, *(r.done_s for r in records)])
    for m in models:
        offered = stats.per_second([r.scheduled_s for r in records if r.model == m], end)
        load.stairs(
            offered,
            np.arange(len(offered) + 1),
            color=colours[m],
            linewidth=1.5,
            linestyle=":",
            label=f"{m}: offered req/s",
        )
    load.set_ylabel("requests per second")
    load.set_ylim(bottom=0)
    _legend(top, load, where="upper")
    for m in models:
        mine = [r for r in records if r.model == m]
        ok = [r for r in mine if r.ok]
        failed = [r for r in mine if not r.ok]
        bottom.scatter(
            [r.sent_s for r in ok],
            [r.latency_s * 1e3 for r in ok],
            s=8,
            color=colours[m],
            alpha=0.6,
            linewidths=0,
            label=f"{m}: 200",
        )
        if failed:
            bottom.scatter(
                [r.sent_s for r in failed],
                [r.latency_s * 1e3 for r in failed],
                s=14,
                marker="x",
                color=colours[m],
                label=f"{m}: failed",
            )
    bottom.axhline(slo_ms, color="tab:red", linewidth=1, label=f"SLO {slo_ms:g} ms")
    log_scale(bottom)
    bottom.set(xlabel="send time (s)", ylabel="latency (ms)")
    bottom.grid(True, which="both", alpha=0.3)
    _legend(bottom, where="lower")
    return _save(fig, path)


# -- the report's figures ---------------------------------------------------------


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
    fig = Figure(figsize=REPORT_SIZE, dpi=REPORT_DPI, layout="constrained")
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
        log_scale(ax)
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
    fig = Figure(figsize=REPORT_SIZE, dpi=REPORT_DPI, layout="constrained")
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
        log_scale(ax)
    else:
        ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return path


# -- helpers ---------------------------------------------------------------------


def _style(label: str) -> tuple[str, str, float]:
    for prefix, style in CONFIG_STYLES.items():
        if label.startswith(prefix) or label.endswith(prefix):
            return style
    return ("tab:gray", "-", 1.5)


def _offered(ax: Axes, records: Sequence[RequestRecord], duration: float) -> Axes:
    load = ax.twinx()
    offered = stats.per_second([r.scheduled_s for r in records], duration)
    load.stairs(
        offered,
        np.arange(len(offered) + 1),
        color=LOAD_COLOUR,
        linewidth=1.2,
        fill=True,
        alpha=0.15,
        label="offered req/s",
    )
    load.set_ylabel("offered requests per second", color=LOAD_COLOUR)
    load.set_ylim(0, max(1, int(offered.max(initial=0))) * 1.6)
    return load


def _legend(
    ax: Axes, other: Axes | None = None, where: Literal["upper", "lower"] = "upper"
) -> None:
    """One legend for an axis and its twin, outside the plot on the right (never over data)."""
    handles, labels = ax.get_legend_handles_labels()
    if other is not None:
        more_handles, more_labels = other.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    loc: Literal["outside right upper", "outside right lower"] = (
        "outside right upper" if where == "upper" else "outside right lower"
    )
    figure.legend(handles, labels, loc=loc, fontsize="small")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path)
    return path
