"""DIR/experiments.md: what `research.experiments` measured, its figures, links to each run.

`render(DIR)` reads the directory back (research.experiment_data) and writes the
report and its figures, so it can be redone without running anything. Every
number comes from the runs; the few sentences that interpret them are
conditions checked here (budget kept or not, a reaction seen or not).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autodep.loadtest import stats
from autodep.loadtest.report import table
from bench.common import cpu_model
from research import experiment_data as data
from research import plots
from research.experiment_data import Experiments, Run

REPORT = "experiments.md"
SLO_WHY = (
    "Why this bound: it is {factor:g} x the median latency of one request at a time on one "
    "warm worker ({single:.0f} ms), rounded to 10 ms. Under load a request shares its "
    "worker: it may wait for the batch in progress and then run in a batch of up to 8 "
    "(dynamic batching), and a batch of 8 takes several times one request, so a pool "
    "that keeps up answers within several single latencies, while a pool that falls "
    "behind queues and its latency grows without bound. {factor:g} x leaves room for the "
    "first and not the second, and it scales with the machine's speed, so the experiment "
    "means the same on a slower or faster machine. The table also gives the share within "
    "half and twice the bound, to show how much the verdict depends on the choice."
)


def render(out: Path) -> Path:
    found = data.load(out)
    lines = _header(found)
    lines += _calibration(found)
    lines += _pools(found)
    lines += _reaction(found)
    lines += _cold(found)
    lines += _two_models(found)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    path = out / REPORT
    path.write_text(text.rstrip("\n") + "\n")
    return path


# -- sections ------------------------------------------------------------------------


def _header(x: Experiments) -> list[str]:
    f = x.facts
    cores = len(os.sched_getaffinity(0))
    boots = ", ".join(f"{n} {b:.1f} s" for n, b in f.boots.items() if b is not None)
    lines = [
        f"# Autoscaling experiments ({f.mode})",
        "",
        f"`python -m research.experiments {' '.join(f.argv[1:])}`: "
        f"{f.runtime_s / 60:.1f} min in all.",
        "",
        *table(
            ["", ""],
            [
                ["machine", f"{cpu_model()}, {cores} cores"],
                [
                    "load average (1, 5, 15 min)",
                    f"before {_load(f.load_before)}; after {_load(f.load_after)}",
                ],
                ["model", f"`{f.model_path}`"],
                ["server boot (to the `serving` line; all five at once)", boots or "—"],
            ],
        ),
        "",
        "Servers: `python -m autodep.serve --port 0 --grace-period 5 --request-timeout 15` plus "
        "(the client gives up after 20 s):",
        "",
    ]
    for name, command in f.commands.items():
        flags = command[command.index("--port") + 2 :]
        flags = _without(flags, ("--grace-period", "--request-timeout"))
        lines.append(f"- **{name}**: `{' '.join(_short(a) for a in flags)}`")
    if f.load_before and f.load_before[0] > cores * 0.5:
        lines += [
            "",
            f"**Caution**: other work kept the machine busy (load average "
            f"{f.load_before[0]:.1f} on {cores} cores at the start), so absolute times are "
            "noisy. Rates and SLO come from a calibration in the same run, so comparisons "
            "between configurations hold better than absolute numbers.",
        ]
    return [*lines, ""]


def _calibration(x: Experiments) -> list[str]:
    cal, rates = x.facts.calibration, x.facts.rates
    if cal is None or rates is None:
        return ["## 0. Calibration", "", "Not finished.", ""]
    singles = sorted(cal.single_ms)
    seconds = x.facts.plan.get("saturation_s", "?")
    lines = ["## 0. Calibration", ""]
    lines += table(
        ["measure", "value", "how"],
        [
            [
                "single-request latency, median",
                f"{cal.single_p50_ms:.0f} ms",
                f"fixed-1, {len(singles)} requests one at a time after 3 untimed "
                f"(from {singles[0]:.0f} to {singles[-1]:.0f} ms)",
            ],
            [
                "capacity of 1 worker (c1)",
                f"{cal.c1:.1f} req/s",
                f"fixed-1: 200 answers/s, closed loop of 24 clients, {seconds} s after 1 s",
            ],
            ["capacity of 2 workers (c2)", f"{cal.c2:.1f} req/s", "fixed-2, the same"],
            ["**SLO**", f"**{rates.slo_ms:g} ms**", f"{x.facts.slo_factor:g} x the median"],
            [
                "base rate",
                f"{rates.base:g} req/s",
                "20 % of min(c1, 1 / single latency): one worker, mostly idle",
            ],
            [
                "peak rate",
                f"{rates.peak:g} req/s",
                "(c1 + c2) / 2: more than one worker can serve, less than two"
                if rates.window
                else "0.9 x min(c1, c2): **c2 is not 10 % above c1**, so no rate overloads one "
                "worker but not two; this one both pools can serve (see below)",
            ],
            ["diurnal trough", f"{rates.trough:g} req/s", "10 % of min(c1, 1 / single)"],
        ],
    )
    if not rates.window:
        lines += [
            "",
            f"A second worker added {cal.c2 / cal.c1 - 1:+.0%} capacity. With adaptive "
            "threads (the default) one worker alone already runs each batch on all the "
            "cores, so on a machine with as many cores as max workers the pools differ in "
            "parallelism, not in capacity, and the experiment cannot show a spike that one "
            "worker fails and two absorb. `--threads-per-worker 1` gives each worker one "
            "core, so that capacity grows with the workers.",
        ]
    if cal.c2 > 2.2 * cal.c1:
        lines += [
            "",
            f"Two workers served {cal.c2 / cal.c1:.1f} x what one did: more than twice. One "
            "worker alone runs each batch with both cores (adaptive threads), two run with "
            "one core each; on cores shared with other work, a two-thread model call waits "
            "for both threads to be scheduled, so the lone worker loses more than half its "
            "speed. Expect this on a busy machine, not on a quiet one.",
        ]
    if cal.saturation_failed:
        lines += ["", f"{cal.saturation_failed} requests failed during the saturation runs."]
    why = SLO_WHY.format(factor=x.facts.slo_factor, single=cal.single_p50_ms)
    return [*lines, "", why, ""]


def _pools(x: Experiments) -> list[str]:
    lines = [
        "## 1. Autoscaler against fixed pools",
        "",
        "The three servers get the same seeded schedule. **SLO** = share of *all* requests "
        "answered 200 within the SLO; latencies are of the 200 answers; **worker-s** = "
        "∫ live workers dt (starting + idle + busy, /metrics every 0.5 s), from 0.5 s "
        "before the first request to 2 s after the last answer. The autoscaler starts each "
        "run from zero workers; the figure's top panel is the p99 of the requests sent in "
        "each second.",
        "",
    ]
    slo_ms = x.slo_ms
    for kind, runs in x.pools.items():
        first = next(iter(runs.values()))
        shape, meta = first.meta.get("shape", {}), first.meta
        if kind == "spike":
            title = (
                f"Spike: {shape['rate']:g} req/s, {shape['peak']:g} req/s from {shape['at']:g} s "
                f"for {shape['width']:g} s, {shape['duration']:g} s in all"
            )
        else:
            trough = 2 * shape["rate"] - shape["peak"]
            title = (
                f"Diurnal: sine from {trough:.2g} up to {shape['peak']:g} req/s and back, "
                f"one {shape['period']:g} s period"
            )
        lines += [
            f"### {title}",
            "",
            f"{meta.get('requests')} requests, Poisson arrivals, seed {meta.get('seed')} "
            f"(`{_rel(x.out, Path(first.summary['run']['schedule']))}`).",
            "",
        ]
        reference = runs["fixed-2"].summary.get("worker_seconds") if "fixed-2" in runs else None
        rows = []
        for config, run in runs.items():
            s = run.summary
            ws = s.get("worker_seconds")
            rows.append(
                [
                    f"**{config}**",
                    str(s["requests"]),
                    f"**{_pct(s['slo_attainment'])}**",
                    _pct(stats.slo_attainment(run.records, slo_ms / 2e3)),
                    _pct(stats.slo_attainment(run.records, slo_ms * 2e-3)),
                    _ms(s, "p50"),
                    _ms(s, "p99"),
                    _ms(s, "max"),
                    _errors(s),
                    _num(ws, 1),
                    f"{ws / reference:.0%}" if ws and reference else "—",
                    _num(s.get("peak_workers")),
                    _link(x.out, run.directory / "report.md", "report"),
                ]
            )
        lines += table(
            [
                "config",
                "requests",
                f"SLO: within {slo_ms:g} ms",
                f"{slo_ms / 2:g} ms",
                f"{slo_ms * 2:g} ms",
                "p50 ms",
                "p99 ms",
                "max ms",
                "failed",
                "worker-s",
                "of fixed-2",
                "peak workers",
                "run",
            ],
            rows,
        )
        views = [plots.RunView(c, r.records, r.samples) for c, r in runs.items()]
        figure = plots.pools_figure(
            x.out / f"exp1_{kind}.png",
            title,
            views,
            slo_ms,
            first.duration,
        )
        compare = x.out / "exp1-pools" / f"{kind}-compare" / "compare.md"
        lines += ["", f"![{kind}]({_rel(x.out, figure)})", ""]
        if compare.exists():
            lines += [f"Latency distributions: {_link(x.out, compare)}.", ""]
        auto = runs.get("autoscaler")
        if kind == "spike" and auto is not None and auto.polls:
            before = [p for p in auto.polls if p.t <= shape["at"]]
            live = before[-1].live(x.model) if before else 0
            lines += [
                f"The autoscaler had {live} live worker(s) when the spike began "
                f"({shape['at']:g} s).",
                "",
            ]
        lines += _decisions(auto)
    return lines


def _decisions(run: Run | None) -> list[str]:
    if run is None or not run.events:
        return []
    ups = sum(e.after > e.before for e in run.events)
    shown = "; ".join(f"{e.t:.1f} s {e.before}→{e.after} ({e.reason})" for e in run.events[:10])
    more = " …" if len(run.events) > 10 else ""
    downs = len(run.events) - ups
    lines = [f"Autoscaler decisions ({ups} up, {downs} down, run clock): {shown}{more}.", ""]
    return lines + _unqueued(run)


def _unqueued(run: Run) -> list[str]:
    """A note on scale-ups that nothing queued asked for (see data.unqueued_scale_ups)."""
    found = data.unqueued_scale_ups(run)
    if not found:
        return []
    times = ", ".join(f"{e.t:.1f} s ({e.before}→{e.after})" for e in found)
    return [
        f"Scaled up with an empty queue at every /status poll of the 2 s before: {times}. "
        "The need came from busy time (or arrivals x the measured service time) alone: a "
        "tick in which one request keeps a worker busy for more than target utilisation x "
        "tick (0.8 s) counts as needing 2 workers, though a second worker has nothing to take.",
        "",
    ]


def _reaction(x: Experiments) -> list[str]:
    lines = ["## 2. Burst reaction time", ""]
    if not x.reactions:
        return [*lines, "Not run.", ""]
    description = x.bursts.meta.get("description", "") if x.bursts else ""
    lines += [
        "The autoscaler server (min 0, max 2, idle timeout 10 s) under step bursts "
        f"({description}; evenly spaced arrivals; the first base-load stretch outlasts the "
        "idle timeout so that the pool holds exactly one warm worker when the first burst "
        "comes), and under the spike of experiment 1 (which starts from zero workers). "
        "Each time is measured from the first second of the burst as scheduled (the run "
        "clock, on which requests also leave):",
        "",
        "- **decision**: the first scale-up in /status `scaling` (its `at`, stamped by the "
        "server with `time.time()`, moved onto the run clock): exact up to clock reading;",
        "- **listed / ready / first served**: the first /status poll (every 0.25 s) that "
        "lists a worker process (pid) that was not there before the burst / shows it idle "
        "or busy / shows its `served` ≥ 1, i.e. its first batch has come back; each is at "
        "most 0.25 s late;",
        "- **startup**: that worker's launch-to-ready time as the server measured it;",
        "- **busy > before**: the first /metrics scrape (every 0.5 s) with more "
        '`autodep_workers{state="busy"}` than there were live workers before the burst.',
        "",
        "**First served** is the reaction time asked for: burst start to the first extra "
        "worker serving.",
        "",
    ]
    rows = []
    for row in x.reactions:
        r = row.reaction
        rows.append(
            [
                row.source,
                str(r.live_before),
                _s(r.decision_s),
                _s(r.seen_s),
                _s(r.ready_s),
                f"**{_s(r.served_s)}**",
                _s(r.startup_s),
                _s(row.busy_s),
            ]
        )
    keys = ("decision_s", "seen_s", "ready_s", "served_s", "startup_s")
    medians = [_s(_median([getattr(row.reaction, k) for row in x.reactions])) for k in keys]
    rows.append(
        [
            "**median**",
            "",
            *medians[:3],
            f"**{medians[3]}**",
            medians[4],
            _s(_median([row.busy_s for row in x.reactions])),
        ]
    )
    lines += table(
        [
            "burst",
            "live before",
            "decision (s)",
            "listed (s)",
            "ready (s)",
            "first served (s)",
            "startup (s)",
            "busy > before (s)",
        ],
        rows,
    )
    cold = [row.source for row in x.reactions if row.reaction.live_before == 0]
    if cold:
        lines += [
            "",
            f"Zero workers were live before {', '.join(cold)}: the “extra” worker there is "
            "a cold start (see experiment 3), not a scale-up.",
        ]
    missing = [row for row in x.reactions if row.reaction.served_s is None]
    if missing:
        lines += [
            "",
            "No extra worker served during "
            + ", ".join(f"{row.source} ({row.reaction.live_before} live before)" for row in missing)
            + ": with 2 already live there is no extra worker to start (max 2).",
        ]
    if x.bursts is not None:
        figure = plots.reaction_figure(
            x.out / "exp2_reaction.png",
            x.bursts.records,
            x.bursts.polls,
            x.model,
            [row.reaction for row in x.reactions if row.source.startswith("bursts")],
            x.bursts.duration,
        )
        lines += [
            "",
            f"![reaction]({_rel(x.out, figure)})",
            "",
            f"Run: {_link(x.out, x.bursts.directory / 'report.md')}; the spike: see experiment 1.",
            "",
            *_decisions(x.bursts),
        ]
    return [*lines, ""]


def _cold(x: Experiments) -> list[str]:
    reps = x.facts.cold
    lines = ["## 3. Cold-from-zero penalty", ""]
    if not reps:
        return [*lines, "Not run.", ""]
    warm_count = x.facts.plan.get("warm_requests", "?")
    lines += [
        "A server with `--min-workers 0 --idle-timeout 2` (the short timeout only makes it "
        "reach zero quickly between repetitions; its forkserver has long imported torch). "
        "Each repetition: wait until /status lists no live worker; send one request "
        "(**cold**: the pool starts a worker at once and the request waits for it); then "
        f"{warm_count} more, one at a time (**warm**). Latency = client send to last byte.",
        "",
    ]
    rows = []
    for n, rep in enumerate(reps, 1):
        warm = statistics.median(rep.warm_ms)
        rows.append(
            [
                str(n),
                f"{rep.waited_s:.1f}",
                f"{rep.cold_ms:.0f}",
                f"{warm:.0f}",
                f"{rep.cold_ms - warm:.0f}",
                _s(rep.startup_s),
                _num(_rest(rep)),
                "200" if rep.cold_status == 200 else str(rep.cold_status),
            ]
        )
    cold = statistics.median(r.cold_ms for r in reps)
    warm = statistics.median(statistics.median(r.warm_ms) for r in reps)
    diff = statistics.median(r.cold_ms - statistics.median(r.warm_ms) for r in reps)
    startup = _median([r.startup_s for r in reps])
    rest = _median([_rest(r) for r in reps])
    rows.append(
        [
            "**median**",
            "",
            f"**{cold:.0f}**",
            f"**{warm:.0f}**",
            f"**{diff:.0f}**",
            _s(startup),
            _num(rest),
            "",
        ]
    )
    lines += table(
        [
            "rep",
            "waited for zero (s)",
            "cold ms",
            "warm median ms",
            "cold - warm ms",
            "worker startup (s)",
            "rest ms",
            "cold status",
        ],
        rows,
    )
    figure = plots.cold_figure(
        x.out / "exp3_cold.png",
        [plots.ColdPoint(str(n), r.cold_ms, r.warm_ms) for n, r in enumerate(reps, 1)],
    )
    lines += [
        "",
        f"The cold request took {cold:.0f} ms (median of {len(reps)}) against {warm:.0f} ms "
        f"warm, {cold / warm:.1f} x; the median per-repetition difference is {diff:.0f} ms, "
        f"of which the worker's own start (launch to warm and ready, as the server measured "
        f"it) is {_s(startup)} s (median). **rest** = cold - warm - startup: what the cold "
        f"request lost beyond the worker's start (median {_num(rest)} ms), e.g. the first "
        "model call of a new worker being slower than a warm one, and the start's "
        "hand-offs.",
        "",
        f"![cold]({_rel(x.out, figure)})",
        "",
    ]
    return lines


def _rest(rep: data.ColdRep) -> float | None:
    """Cold minus warm minus the worker's startup, in ms."""
    if rep.startup_s is None:
        return None
    return rep.cold_ms - statistics.median(rep.warm_ms) - rep.startup_s * 1e3


def _two_models(x: Experiments) -> list[str]:
    run = x.two_models
    lines = ["## 4. Two models, alternating bursts, one budget", ""]
    if run is None:
        return [*lines, "Not run.", ""]
    budget = 2
    lines += [
        "One file served as two models, `a` and `b`: `--max-total-workers 2 --min-workers 0 "
        "--max-workers 2 --idle-timeout 10`. The schedule "
        f"(`{_rel(x.out, Path(run.summary['run']['schedule']))}`): "
        f"{run.meta.get('description', '')}; the other model gets no request at all "
        "meanwhile. Workers per model from /status every 0.25 s; times from the start of "
        "each burst.",
        "",
    ]
    rows = []
    for seg in x.segments:
        s = seg.summary
        rows.append(
            [
                f"{seg.start:g} to {seg.end:g} s",
                f"**{seg.model}**",
                _s(seg.to_full_s),
                _s(seg.other_zero_s),
                str(seg.most_live),
                str(s["requests"]),
                _errors(s),
                _ms(s, "p50"),
                _ms(s, "p99"),
                _pct(s["slo_attainment"]),
            ]
        )
    lines += table(
        [
            "burst",
            "busy model",
            "busy model at 2 workers after (s)",
            "other at 0 after (s)",
            "most live (a + b)",
            "requests",
            "failed",
            "p50 ms",
            "p99 ms",
            "SLO",
        ],
        rows,
    )
    by_model = run.summary.get("models", {})
    if by_model:
        lines += ["", "Whole run, by model:", ""]
        lines += table(
            ["model", "requests", "ok", "p50 ms", "p99 ms", "SLO"],
            [
                [
                    m,
                    str(v["requests"]),
                    str(v["ok"]),
                    _ms(v, "p50"),
                    _ms(v, "p99"),
                    _pct(v.get("slo_attainment")),
                ]
                for m, v in by_model.items()
            ],
        )
    slo_ms = x.slo_ms
    figure = plots.alternating_figure(
        x.out / "exp4_two_models.png",
        run.records,
        run.polls,
        list(data.TWO_MODELS),
        budget,
        slo_ms,
        run.duration,
    )
    lines += ["", f"![two models]({_rel(x.out, figure)})", ""]
    over = [seg for seg in x.segments if seg.most_live > budget]
    if over:
        lines += [
            f"**Over budget**: {max(s.most_live for s in over)} workers live at once "
            f"(budget {budget}) at "
            + ", ".join(f"{s.most_live_at:.1f} s" for s in over if s.most_live_at is not None)
            + " (see the figure and the scaling decisions below).",
            "",
        ]
    lines += [
        "Scaling decisions (run clock): "
        + "; ".join(f"{e.t:.1f} s {e.model} {e.before}→{e.after} ({e.reason})" for e in run.events)
        + ".",
        "",
        f"Run: {_link(x.out, run.directory / 'report.md')}.",
        "",
    ]
    return lines


# -- formatting ----------------------------------------------------------------------


def _rel(out: Path, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


def _link(out: Path, path: Path, text: str | None = None) -> str:
    target = _rel(out, path)
    return f"[{text or target}]({target})"


def _without(flags: Sequence[str], names: Sequence[str]) -> list[str]:
    """`flags` less each of `names` and its value."""
    kept: list[str] = []
    skip = False
    for flag in flags:
        if skip:
            skip = False
        elif flag in names:
            skip = True
        else:
            kept.append(flag)
    return kept


def _short(arg: str) -> str:
    return Path(arg).name if "/" in arg else arg


def _load(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values) or "—"


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}"


def _ms(summary: dict[str, Any], key: str) -> str:
    return _num((summary.get("latency_ms") or {}).get(key))


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share:.1%}"


def _errors(summary: dict[str, Any]) -> str:
    errors = summary.get("errors") or {}
    if not errors:
        return "0"
    return f"{summary['failed']} (" + ", ".join(f"{k}: {v}" for k, v in errors.items()) + ")"
