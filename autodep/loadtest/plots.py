"""PNG figures of a run (and of several runs side by side), drawn with matplotlib's
object API (`Figure`, rendered by Agg): no pyplot, no global state.

    latency.png   each request's latency at its send time, coloured by status,
                  the SLO, and the offered load (requests/s) on a second axis
    workers.png   workers by state (stacked) and the desired count, against the
                  offered load and the 200 answers per second
    queue.png     queue depth by model, and the mean batch size per scrape
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from autodep.loadtest import stats
from autodep.loadtest.records import NO_RESPONSE, OK, RequestRecord, ServerSample

SIZE = (10.0, 4.5)
DPI = 110
STATUS_COLOURS = {OK: "tab:blue", 503: "tab:orange", 504: "tab:red", NO_RESPONSE: "black"}
STATE_COLOURS = {
    "starting": "tab:olive",
    "idle": "tab:green",
    "busy": "tab:blue",
    "stopping": "tab:gray",
}
LOAD_COLOUR = "tab:purple"


def plot_run(
    directory: Path,
    records: Sequence[RequestRecord],
    samples: Sequence[ServerSample],
    slo_ms: float,
    duration: float,
) -> list[Path]:
    """Every figure of one run, into `directory`; returns the files written."""
    written = [_save(_latency(records, slo_ms, duration), directory / "latency.png")]
    if samples:
        written.append(_save(_workers(records, samples, duration), directory / "workers.png"))
        written.append(_save(_queue(samples), directory / "queue.png"))
    return written


def plot_comparison(
    directory: Path,
    runs: Sequence[tuple[str, Sequence[RequestRecord], Sequence[ServerSample]]],
) -> list[Path]:
    """Latency distributions, and live workers over time, of several runs."""
    cdf, ax = _figure()
    for label, records, _ in runs:
        latencies = np.sort([r.latency_s * 1e3 for r in records if r.ok])
        if len(latencies):
            share = np.arange(1, len(latencies) + 1) / len(records)  # of all requests
            ax.step(latencies, share, where="post", label=label)
    ax.set(xlabel="latency (ms)", ylabel="share of requests answered 200")
    log_scale(ax, "x")
    ax.set_title("Latency distribution (failed requests never reach the top)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    written = [_save(cdf, directory / "latency_cdf.png")]
    if any(samples for _, _, samples in runs):
        workers, ax = _figure()
        for label, _, samples in runs:
            if samples:
                series = stats.totals(samples)
                ax.step(series["t"], series["live"], where="post", label=label)
        ax.set(xlabel="time (s)", ylabel="live workers (starting + idle + busy)")
        ax.set_ylim(bottom=0)
        ax.set_title("Workers over time")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left")
        written.append(_save(workers, directory / "workers.png"))
    return written


# -- one figure each -------------------------------------------------------------


def _latency(records: Sequence[RequestRecord], slo_ms: float, duration: float) -> Figure:
    fig, ax = _figure()
    for status in sorted({r.status for r in records}):
        mine = [r for r in records if r.status == status]
        name = "no response" if status == NO_RESPONSE else str(status)
        ax.scatter(
            [r.sent_s for r in mine],
            [r.latency_s * 1e3 for r in mine],
            s=9,
            alpha=0.7,
            linewidths=0,
            color=STATUS_COLOURS.get(status, "tab:brown" if status >= 500 else "tab:pink"),
            label=f"{name} ({len(mine)})",
            zorder=3,
        )
    ax.axhline(slo_ms, color="tab:red", linestyle="--", linewidth=1, label=f"SLO {slo_ms:g} ms")
    latencies = [r.latency_s * 1e3 for r in records if r.latency_s > 0]
    if latencies and max(latencies) / max(min(latencies), 1e-3) > 20:
        log_scale(ax)
    ax.set(xlabel="send time (s)", ylabel="latency (ms)", title="Latency of each request")
    ax.grid(True, which="both", alpha=0.3)
    load = _load_axis(ax, records, duration, served=False)
    _legend(ax, load)
    return fig


def _workers(
    records: Sequence[RequestRecord], samples: Sequence[ServerSample], duration: float
) -> Figure:
    fig, ax = _figure()
    series = stats.totals(samples)
    states = [s for s in STATE_COLOURS if series[s].any()] or ["idle"]
    ax.stackplot(
        series["t"],
        *(series[s] for s in states),
        labels=states,
        colors=[STATE_COLOURS[s] for s in states],
        step="post",
        alpha=0.6,
    )
    if not np.isnan(series["desired"]).all():
        ax.step(
            series["t"],
            series["desired"],
            where="post",
            color="black",
            linestyle="--",
            label="desired",
        )
    ax.set(xlabel="time (s)", ylabel="workers (all models)", title="Workers and load")
    ax.set_ylim(0, max(1.0, float(np.nanmax([series["live"].max(), *series["desired"]]))) + 1)
    ax.grid(True, alpha=0.3)
    load = _load_axis(ax, records, duration, served=True)
    _legend(ax, load)
    return fig


def _queue(samples: Sequence[ServerSample]) -> Figure:
    fig, ax = _figure()
    batch = ax.twinx()
    for i, (model, series) in enumerate(stats.by_model(samples).items()):
        colour = f"C{i}"
        times = [s.t for s in series]
        ax.step(
            times,
            [s.queue_depth for s in series],
            where="post",
            color=colour,
            label=f"queue depth: {model}",
        )
        means = [(s.t, s.batch_mean) for s in series if s.batch_mean is not None]
        if means:
            batch.plot(
                *zip(*means, strict=True),
                "o",
                color=colour,
                markersize=4,
                alpha=0.7,
                label=f"mean batch: {model}",
            )
    ax.set(xlabel="time (s)", ylabel="requests waiting", title="Queue depth and batch size")
    ax.set_ylim(bottom=0)
    batch.set_ylabel("mean batch size (o)")
    batch.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    _legend(ax, batch)
    return fig


# -- helpers ---------------------------------------------------------------------


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def log_scale(ax: Axes, which: Literal["x", "y"] = "y") -> None:
    """A log axis labelled 1, 2, 5, 10, 20, 50, ... rather than 2x10^1 (research/ too)."""
    axis: Axis
    if which == "y":
        ax.set_yscale("log")
        axis = ax.yaxis
    else:
        ax.set_xscale("log")
        axis = ax.xaxis
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _leading(v) in (2, 5) else ""))
    ax.tick_params(axis=which, which="minor", labelsize="small")


def _leading(value: float) -> int:
    """The first digit of a positive number (2 for 0.02, 200, 250); 0 for 0."""
    return int(value / 10 ** np.floor(np.log10(value)) + 1e-9) if value > 0 else 0


def _load_axis(ax: Axes, records: Sequence[RequestRecord], duration: float, served: bool) -> Axes:
    """Offered requests per second (and, if `served`, 200 answers per second) on a twin axis."""
    load = ax.twinx()
    answered = [r.done_s for r in records if r.ok] if served else []
    end = max([duration, *answered])
    offered = stats.per_second([r.scheduled_s for r in records], end)
    seconds = np.arange(len(offered) + 1)
    load.stairs(offered, seconds, color=LOAD_COLOUR, linewidth=1.5, label="offered req/s")
    done = stats.per_second(answered, end)
    if served:
        load.stairs(
            done, seconds, color=LOAD_COLOUR, linestyle=":", linewidth=1.5, label="answered 200/s"
        )
    load.set_ylabel("requests per second", color=LOAD_COLOUR)
    top = max(1, int(offered.max(initial=0)), int(done.max(initial=0)))
    load.set_ylim(bottom=0, top=top * 1.15)
    return load


def _legend(ax: Axes, other: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = other.get_legend_handles_labels()
    ax.legend(
        handles + more_handles,
        labels + more_labels,
        loc="upper left",
        fontsize="small",
        framealpha=0.85,
    )


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path)
    return path
