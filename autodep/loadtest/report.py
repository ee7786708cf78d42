"""Markdown: one run's report.md, and compare.md for several runs side by side.

`write_run` and `write_comparison` do the whole job (statistics, files, figures,
Markdown); the Markdown itself comes from the summary alone (summary.json:
`autodep.loadtest.stats.summarize` plus a "run" section), so it can be redone from a saved
run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autodep.loadtest import plots, results, stats
from autodep.loadtest.records import RequestRecord, ServerSample

Summary = dict[str, Any]
REPORT = "report.md"
COMPARISON = "compare.md"


def write_run(
    directory: Path,
    records: list[RequestRecord],
    samples: list[ServerSample],
    run: dict[str, Any],
    slo_ms: float,
) -> Summary:
    """Records, summary, figures and report.md of one run, into `directory`."""
    meta = run.get("schedule_meta", {})
    duration = meta.get("shape", {}).get("duration", meta.get("duration"))
    if run.get("interrupted"):
        duration = None  # the part of the schedule that was sent, not all of it
    summary = {"run": run, **stats.summarize(records, samples, slo_ms, duration)}
    results.save(directory, records, samples, summary)
    end = max((r.scheduled_s for r in records), default=0.0)
    figures = plots.plot_run(directory, records, samples, slo_ms, duration or end)
    (directory / REPORT).write_text(run_report(summary, figures))
    return summary


def write_comparison(out: Path, runs: Sequence[results.SavedRun]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    figures = plots.plot_comparison(out, [(r.label, r.records, r.samples) for r in runs])
    path = out / COMPARISON
    path.write_text(comparison([(r.label, r.summary) for r in runs], figures))
    return path


def run_report(summary: Summary, figures: Sequence[Path]) -> str:
    run = summary.get("run", {})
    lines = [f"# Load test: {run.get('label', 'run')}", ""]
    lines += table(
        ["", ""],
        [
            ["schedule", f"`{run.get('schedule', '?')}` {_describe(run.get('schedule_meta', {}))}"],
            ["URL", f"`{run.get('url', '?')}`"],
            ["date", str(run.get("started", "?"))],
            ["request timeout", f"{run.get('timeout_s', '?')} s"],
            ["server metrics", _scraping(summary, run)],
        ],
    )
    if run.get("interrupted"):
        lines += [
            "",
            "**Interrupted** (Ctrl-C): only the requests answered until then are counted.",
        ]
    lines += ["", "## Summary", ""]
    lines += table(["metric", "value"], [[name, cell(summary)] for name, cell in ROWS])
    if summary.get("models"):
        lines += ["", "## By model", ""]
        lines += table(
            ["model", "requests", "ok", "p50 ms", "p99 ms", "SLO"],
            [
                [
                    model,
                    str(m["requests"]),
                    str(m["ok"]),
                    _num(_get(m, "latency_ms", "p50")),
                    _num(_get(m, "latency_ms", "p99")),
                    _pct(m.get("slo_attainment")),
                ]
                for model, m in summary["models"].items()
            ],
        )
    lines += ["", "## Figures", ""]
    for figure in figures:
        lines += [f"![{figure.stem}]({figure.name})", ""]
    if not any(f.stem == "workers" for f in figures):
        lines += ["(No server metrics, so no workers or queue figures: see above.)", ""]
    return "\n".join(lines)


def comparison(runs: Sequence[tuple[str, Summary]], figures: Sequence[Path]) -> str:
    headers = ["run", *(name for name, _ in COMPARED)]
    rows = [[label, *(cell(summary) for _, cell in COMPARED)] for label, summary in runs]
    lines = ["# Comparison", ""]
    lines += table(headers, rows)
    lines += ["", "Latencies are in ms, of 200 answers; SLO = share of all requests answered"]
    lines += ["200 within the run's bound; send p99 = the generator's lag (ms).", ""]
    for label, summary in runs:
        run = summary.get("run", {})
        meta = _describe(run.get("schedule_meta", {}))
        lines.append(
            f"- **{label}**: `{run.get('schedule', '?')}` {meta} against `{run.get('url')}`"
        )
    lines.append("")
    for figure in figures:
        lines += [f"![{figure.stem}]({figure.name})", ""]
    return "\n".join(lines)


# -- cells -------------------------------------------------------------------------

Cell = Callable[[Summary], str]


def _latencies(s: Summary) -> str:
    if not s.get("latency_ms"):
        return "—"
    return " / ".join(_num(s["latency_ms"][k]) for k in ("p50", "p90", "p99", "max")) + " ms"


def _errors(s: Summary) -> str:
    errors = s.get("errors") or {}
    return ", ".join(f"{status}: {n}" for status, n in errors.items()) or "none"


def _send_error(s: Summary) -> str:
    if not s.get("send_error_ms"):
        return "—"
    return " / ".join(_num(s["send_error_ms"][k], 2) for k in ("median", "p99", "max")) + " ms"


ROWS: list[tuple[str, Cell]] = [
    ("requests (ok / failed)", lambda s: f"{s['requests']} ({s['ok']} / {s['failed']})"),
    ("offered load", lambda s: f"{_num(s['offered_rps'], 2)} req/s"),
    ("throughput (200 answers)", lambda s: f"{_num(s['throughput_rps'], 2)} req/s"),
    ("latency p50 / p90 / p99 / max", _latencies),
    ("SLO attainment", lambda s: f"{_pct(s['slo_attainment'])} within {s['slo_ms']:g} ms"),
    ("errors by status", _errors),
    ("send-time error median / p99 / max", _send_error),
    ("worker-seconds", lambda s: _num(s.get("worker_seconds"), 1)),
    ("peak live workers", lambda s: _num(s.get("peak_workers"))),
    ("mean batch size", lambda s: _num(s.get("mean_batch_size"), 2)),
]

COMPARED: list[tuple[str, Cell]] = [
    ("requests", lambda s: str(s["requests"])),
    ("offered req/s", lambda s: _num(s["offered_rps"], 2)),
    ("200/s", lambda s: _num(s["throughput_rps"], 2)),
    ("p50", lambda s: _num(_get(s, "latency_ms", "p50"))),
    ("p90", lambda s: _num(_get(s, "latency_ms", "p90"))),
    ("p99", lambda s: _num(_get(s, "latency_ms", "p99"))),
    ("max", lambda s: _num(_get(s, "latency_ms", "max"))),
    ("SLO", lambda s: f"{_pct(s['slo_attainment'])} ≤{s['slo_ms']:g}"),
    ("failed", lambda s: str(s["failed"])),
    ("worker-s", lambda s: _num(s.get("worker_seconds"), 1)),
    ("peak workers", lambda s: _num(s.get("peak_workers"))),
    ("batch", lambda s: _num(s.get("mean_batch_size"), 2)),
    ("send p99", lambda s: _num(_get(s, "send_error_ms", "p99"), 2)),
]


# -- formatting --------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, one line per row; a `|` inside a cell is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(headers), line(["---"] * len(headers)), *(line(row) for row in rows)]


def _get(summary: Summary, section: str, key: str) -> float | None:
    values = summary.get(section)
    return None if not values else values.get(key)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f} %"


def _describe(meta: dict[str, Any]) -> str:
    """`(poisson, 10 req/s, 20 s, poisson arrivals, seed 0, models a:2 b)` from .meta.json."""
    if not meta:
        return ""
    if meta.get("kind") == "replay":
        parts = [f"replay of `{meta.get('source')}`", f"speed {meta.get('speed', 1):g}"]
    elif meta.get("kind") == "composite":  # pieces one after another (research.experiments)
        parts = [f"composite: {meta.get('description', '')}", f"{meta.get('duration', 0):g} s"]
        parts.append(f"{meta.get('arrivals')} arrivals")
    else:
        shape = meta.get("shape", {})
        parts = [str(meta.get("kind")), f"{shape['rate']:g} req/s", f"{shape['duration']:g} s"]
        parts += [
            f"{k} {shape[k]:g}"
            for k in ("peak", "at", "width", "period")
            if shape.get(k) is not None
        ]
        parts.append(f"{meta.get('arrivals')} arrivals")
    parts.append(f"seed {meta.get('seed')}")
    parts += [
        _choices("models", meta.get("models", [])),
        _choices("payloads", meta.get("payloads", [])),
    ]
    return "(" + ", ".join(p for p in parts if p) + ")"


def _choices(name: str, choices: list[dict[str, Any]]) -> str:
    """`models a:3 b`: the schedule's models (or payloads) as `make` took them."""
    if not choices:
        return ""
    items = [
        (f"{c['model']}=" if c.get("model") else "")
        + c["value"]
        + (f":{c['weight']:g}" if c.get("weight", 1) != 1 else "")
        for c in choices
    ]
    return f"{name} `{' '.join(items)}`"


def _scraping(summary: Summary, run: dict[str, Any]) -> str:
    if not run.get("scrape", True):
        return "not scraped (--no-scrape)"
    failures = run.get("scrape_failures", 0)
    note = f", {failures} failed" if failures else ""
    return f"{summary.get('scrapes', 0)} scrapes of /metrics{note}"
