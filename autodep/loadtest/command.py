"""`autodep loadtest`: seeded request schedules, sent open loop to a running server.

    autodep loadtest make poisson --rate 10 --duration 20 --out load/poisson.jsonl
    autodep loadtest make spike --rate 5 --peak 40 --at 8 --width 3 --duration 20 --out spike.jsonl
    autodep loadtest make replay --from trace.csv --out load/replay.jsonl
    autodep loadtest run load/poisson.jsonl --url http://127.0.0.1:8000 --out results/poisson
    autodep loadtest report results/poisson [--slo-ms 200]
    autodep loadtest compare results/autoscale results/fixed --out results/compare

`make` needs only autodep; `run`, `report` and `compare` draw figures and show a
progress bar, with the `loadtest` extra: pip install 'autodep[loadtest]'.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autodep.loadtest import payloads, results, schedule

EXTRA = "loadtest"
EXTRA_MODULES = ("matplotlib", "tqdm")  # the figures and the progress bar


def main(argv: Sequence[str] | None = None, prog: str = "autodep loadtest") -> int:
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args.command(args)
    except ValueError as error:  # bad option values, unreadable schedules or traces
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MissingExtra as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


class MissingExtra(Exception):
    """A command needs a package of the `loadtest` extra that is not installed."""


def _require_extra() -> None:
    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtra(
            f"this command needs {' and '.join(missing)}: pip install 'autodep[{EXTRA}]'"
        )


# -- commands ----------------------------------------------------------------------


def make(args: argparse.Namespace) -> None:
    models = [schedule.Choice.parse(m) for m in args.model]
    bodies = [schedule.Choice.parse(p, bindable=True) for p in args.payload]
    mix: dict[str, Any] = {
        "seed": args.seed,
        "mix": args.mix,
        "models": [asdict(m) for m in models],
        "payloads": [asdict(p) for p in bodies],
    }
    if args.kind == "replay":
        if args.source is None:
            raise ValueError("make replay needs --from CSV")
        requests = schedule.replay(
            args.source,
            models,
            bodies,
            mix=args.mix,
            seed=args.seed,
            column=args.column,
            speed=args.speed,
            duration=args.duration,
        )
        meta = {"kind": "replay", "source": str(args.source), "speed": args.speed, **mix}
    else:
        if args.rate is None or args.duration is None:
            raise ValueError(f"make {args.kind} needs --rate and --duration")
        kind = schedule.ALIASES.get(args.kind, args.kind)
        shape = schedule.Shape(
            kind, args.rate, args.duration, args.peak, args.at, args.width, args.period
        ).resolved()
        arrivals = args.arrivals or schedule.default_arrivals(kind)
        requests = schedule.make(
            shape, seed=args.seed, arrivals=arrivals, models=models, payloads=bodies, mix=args.mix
        )
        meta = {"kind": kind, "shape": asdict(shape), "arrivals": arrivals, **mix}
    schedule.save(args.out, requests, {**meta, "requests": len(requests)})
    span = requests[-1].t if requests else 0.0
    print(f"{args.out}: {len(requests)} requests over {span:.1f} s")


def run(args: argparse.Namespace) -> None:
    _require_extra()
    # Imported here, not at the top: they need the optional extra, which `make` does not.
    from autodep.loadtest import executor, report

    requests = schedule.load(args.file)
    bodies = payloads.load_bodies((r.payload for r in requests), args.file.parent)
    config = executor.RunConfig(
        url=args.url,
        timeout=args.timeout,
        connections=args.connections,
        scrape=args.scrape,
        scrape_interval=args.scrape_interval,
        linger=args.linger,
        progress=not args.quiet,
    )
    result = executor.run(requests, bodies, config)
    info = {
        "label": args.label or args.out.name,
        "schedule": str(args.file),
        "schedule_meta": schedule.load_meta(args.file),
        "url": args.url,
        "started": result.started.isoformat(),
        "timeout_s": args.timeout,
        "scrape": args.scrape,
        "scrape_failures": result.scrape_failures,
        "interrupted": result.interrupted,
    }
    if result.interrupted:
        print(
            f"interrupted: {len(result.records)} of {len(requests)} requests answered",
            file=sys.stderr,
        )
    summary = report.write_run(args.out, result.records, result.samples, info, args.slo_ms)
    _print_summary(args.out, summary)


def rerender(args: argparse.Namespace) -> None:
    _require_extra()
    from autodep.loadtest import report

    saved = results.load(args.dir)
    run_info = saved.summary.get("run", {"label": args.dir.name})
    slo_ms = args.slo_ms if args.slo_ms is not None else saved.summary.get("slo_ms", 100.0)
    summary = report.write_run(args.dir, saved.records, saved.samples, run_info, slo_ms)
    _print_summary(args.dir, summary)


def compare(args: argparse.Namespace) -> None:
    _require_extra()
    from autodep.loadtest import report

    path = report.write_comparison(args.out, [results.load(d) for d in args.dirs])
    print(path)


def _print_summary(directory: Path, summary: dict[str, Any]) -> None:
    from autodep.loadtest import report

    rows = report.ROWS
    width = max(len(name) for name, _ in rows)
    for name, cell in rows:
        print(f"{name.ljust(width)}  {cell(summary)}")
    print(f"report: {directory / report.REPORT}")


# -- options -----------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    p = commands.add_parser("make", help="write a seeded request schedule")
    p.set_defaults(command=make)
    p.add_argument(
        "kind",
        metavar="KIND",
        choices=[*schedule.KINDS, *schedule.ALIASES, "replay"],
        help=f"{', '.join(schedule.KINDS)} (or diurnal), or replay",
    )
    p.add_argument("--rate", type=float, help="base (or mean) requests per second")
    p.add_argument("--duration", type=float, help="seconds (replay: cut the trace there)")
    p.add_argument(
        "--peak",
        type=float,
        help="ramp: end rate; step/spike: raised rate; sine: top rate (default 2x rate, spike 5x)",
    )
    p.add_argument(
        "--at",
        type=float,
        help="step/spike: start of the raised rate (default: spike 0.4, step 0.5 of the duration)",
    )
    p.add_argument(
        "--width",
        type=float,
        help="step/spike: seconds at the raised rate (step: to the end; "
        "spike: 10%% of the duration, at most 5 s)",
    )
    p.add_argument("--period", type=float, help="sine: seconds per cycle (default: duration)")
    p.add_argument(
        "--arrivals",
        choices=schedule.ARRIVALS,
        help="poisson or evenly spaced (default: even for constant, else poisson)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--model",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME[:W]",
        help="models to call, optionally weighted (default: POST /predict)",
    )
    p.add_argument(
        "--payload",
        action="extend",
        nargs="+",
        default=[],
        metavar="[MODEL=]FILE[:W]",
        help="request bodies, optionally for one model only and weighted "
        "(default: a generated JPEG)",
    )
    p.add_argument(
        "--mix",
        choices=schedule.MIXES,
        default="round-robin",
        help="how models and payloads alternate (random: weighted, seeded)",
    )
    p.add_argument("--from", dest="source", type=Path, help="replay: CSV of timestamps")
    p.add_argument("--column", help="replay: the timestamp column (default t, else the first)")
    p.add_argument("--speed", type=float, default=1.0, help="replay: time compression factor")
    p.add_argument("--out", type=Path, required=True, help="FILE.jsonl or FILE.csv")

    p = commands.add_parser("run", help="send a schedule to a server, open loop, and report")
    p.set_defaults(command=run)
    p.add_argument("file", type=Path, help="a schedule from `make`")
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--out", type=Path, required=True, help="directory for records and report")
    p.add_argument("--slo-ms", type=float, default=100.0, help="latency bound (default 100)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    p.add_argument(
        "--scrape",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scrape URL/metrics during the run (default: yes)",
    )
    p.add_argument("--scrape-interval", type=float, default=1.0, help="seconds (default 1)")
    p.add_argument(
        "--linger",
        type=float,
        default=2.0,
        help="seconds to keep scraping after the last answer (default 2)",
    )
    p.add_argument("--connections", type=int, default=1000, help="client connection limit")
    p.add_argument("--label", help="name of the run in reports (default: the --out name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("report", help="redo the summary, figures and report of a run")
    p.set_defaults(command=rerender)
    p.add_argument("dir", type=Path)
    p.add_argument("--slo-ms", type=float, help="a new latency bound (default: the run's)")

    p = commands.add_parser("compare", help="a Markdown table and figures of several runs")
    p.set_defaults(command=compare)
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    p.add_argument("--out", type=Path, required=True)
    return parser
