"""The autoscaling experiments, end to end: real servers, the open-loop executor, one report.

    python -m research.experiments --out DIR [--quick] [--model PATH] [--threads-per-worker N]

    servers   `python -m autodep.serve --port 0` subprocesses, all booted at the start (so
              every forkserver has imported torch before anything is timed), each stopped
              with SIGTERM when its experiment is over: fixed-1, fixed-2, autoscaler,
              cold (exp. 3), two-models (exp. 4)
    0. calibrate  one request at a time on fixed-1 (the single-request latency L), then
                  closed-loop saturation of fixed-1 and fixed-2 (capacities c1, c2):
                  the SLO is SLO_FACTOR x L; the spike peak lies between c1 and c2
    1. pools      a spike and a diurnal (sine) schedule, each against the autoscaler
                  (min 0, max 2, idle 10 s), fixed-1 and fixed-2
    2. reaction   step bursts on the autoscaler: from a burst's start to the first
                  extra worker serving (/status polled every POLL_S)
    3. cold       scaled to zero, one request (cold) then warm ones; repeated
    4. two models a and b (one file, two names), alternating bursts, budget 2 workers

Writes DIR/experiments.md (figures DIR/*.png; links to each run's report.md),
DIR/experiments.json (how it ran, calibration, cold starts), DIR/schedules/, one
`bench run` directory per load run (plus status.jsonl: its /status polls, and
scaling.json) under DIR/exp1-pools, DIR/exp2-reaction, DIR/exp4-two-models, and
each server's log in DIR/logs/. `--report-only` redoes the report from DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from autodep.loadtest import executor, payloads, report, results, schedule
from autodep.loadtest.records import NO_RESPONSE
from autodep.loadtest.schedule import Choice, Request, Shape
from bench.common import make_resnet18
from bench.server import ServerProcess, stop_all
from research import experiment_data as data
from research import experiment_report as write
from research import status
from research.experiment_data import Calibration, ColdRep, Facts, Rates

log = logging.getLogger("research.experiments")
_BEGAN = time.monotonic()

SLO_FACTOR = 10.0  # SLO = this x the single-request latency (see `experiment_report.SLO_WHY`)
POLL_S = 0.25  # /status polling interval: the resolution of reaction times
SCRAPE_S = 0.5  # /metrics scraping interval
LINGER_S = 2.0  # seconds of scraping after the last answer
SERVER_TIMEOUT_S = 15.0  # --request-timeout: past this an overloaded pool answers 504 ...
REQUEST_TIMEOUT_S = 20.0  # ... before the client gives up (it counts as "no response" then)
SATURATION_CONCURRENCY = 24  # closed-loop clients: full batches of 8 for 2 workers, < max_queue
ARRIVALS = "poisson"
IDLE_TIMEOUT_S = 10.0  # the autoscaler configurations (exp. 1, 2, 4)
COLD_IDLE_TIMEOUT_S = 2.0  # exp. 3 only: reach zero workers quickly between repetitions
BUDGET = 2  # --max-total-workers of exp. 4

COMMON = ["--grace-period", "5", "--request-timeout", f"{SERVER_TIMEOUT_S:g}"]
CONFIGS: dict[str, list[str]] = {
    "autoscaler": [
        "--min-workers",
        "0",
        "--max-workers",
        "2",
        "--idle-timeout",
        f"{IDLE_TIMEOUT_S:g}",
    ],
    "fixed-1": ["--min-workers", "1", "--max-workers", "1"],
    "fixed-2": ["--min-workers", "2", "--max-workers", "2"],
}
COLD = ["--min-workers", "0", "--max-workers", "2", "--idle-timeout", f"{COLD_IDLE_TIMEOUT_S:g}"]
TWO_MODELS = ["--max-total-workers", str(BUDGET), "--min-workers", "0", "--max-workers", "2"]
TWO_MODELS += ["--idle-timeout", f"{IDLE_TIMEOUT_S:g}"]


@dataclass(frozen=True)
class Plan:
    """Durations (seconds) and repetitions, full or --quick."""

    saturation_s: float  # closed-loop measuring time per pool (after 1 s of warm-up)
    single_requests: int  # timed one-at-a-time requests (after 3 untimed)
    spike: tuple[float, float, float]  # duration, start of the spike, its width
    diurnal_s: float  # one sine period, trough to trough
    bursts: int  # exp. 2 repetitions of (base, burst, base)
    burst: tuple[float, float, float]  # seconds of base load first, of a burst, after each
    cold_reps: int
    warm_requests: int  # after each cold one
    alternations: int  # exp. 4 bursts (a, b, a, ...)
    alternation_s: float  # seconds per burst


FULL = Plan(8, 20, (40, 12, 10), 60, 3, (14, 8, 13), 5, 5, 4, 20)
QUICK = Plan(2, 6, (10, 3, 4), 10, 1, (12, 4, 2), 3, 3, 3, 6)


def choose_rates(cal: Calibration) -> Rates:
    """The SLO, and rates relative to what this machine's pools measured."""
    one_at_a_time = 1e3 / cal.single_p50_ms
    light = min(cal.c1, one_at_a_time)
    # Between one worker's capacity and two's; if two add less than 10 %, no rate is,
    # and the peak is one that both pools can serve.
    window = cal.c2 > 1.1 * cal.c1
    peak = (cal.c1 + cal.c2) / 2 if window else 0.9 * min(cal.c1, cal.c2)
    return Rates(
        slo_ms=round(SLO_FACTOR * cal.single_p50_ms, -1) or 10.0,
        base=round(0.2 * light, 2),
        peak=round(peak, 2),
        trough=round(0.1 * light, 2),
        window=window,
    )


# -- one load-test run, with /status polled alongside -------------------------------


async def load_run(
    url: str, path: Path, label: str, directory: Path, slo_ms: float
) -> dict[str, Any]:
    """`autodep loadtest run` through the executor's API, plus a /status poller."""
    requests = schedule.load(path)
    bodies = payloads.load_bodies((r.payload for r in requests), path.parent)
    meta = schedule.load_meta(path)
    config = executor.RunConfig(
        url=url,
        timeout=REQUEST_TIMEOUT_S,
        scrape_interval=SCRAPE_S,
        linger=LINGER_S,
        progress=False,
    )
    poller = status.StatusPoller(url, POLL_S)
    polling = asyncio.create_task(poller.run())
    try:
        result = await executor.execute(requests, bodies, config)
    finally:
        poller.stop()
        await polling
    polls = status.on_run_clock(poller.polls, result.t0)
    info = {
        "label": label,
        "schedule": str(path),
        "schedule_meta": meta,
        "url": url,
        "started": result.started.isoformat(),
        "timeout_s": REQUEST_TIMEOUT_S,
        "scrape": True,
        "scrape_failures": result.scrape_failures,
        "interrupted": result.interrupted,
        "status_polls": len(polls),
        "status_failures": poller.failures,
    }
    summary = report.write_run(directory, result.records, result.samples, info, slo_ms)
    events = status.scaling_events(polls)
    status.save(directory / "status.jsonl", polls)
    (directory / "scaling.json").write_text(
        json.dumps([asdict(e) for e in events], indent=1) + "\n"
    )
    _say(f"  {label}: {_one_line(summary)}")
    return summary


def _one_line(s: dict[str, Any]) -> str:
    lat = s.get("latency_ms") or {}
    slo = s.get("slo_attainment")
    return (
        f"{s['requests']} requests, {s['failed']} failed, p50 {lat.get('p50', float('nan')):.0f}"
        f" / p99 {lat.get('p99', float('nan')):.0f} ms, SLO {0 if slo is None else slo:.1%},"
        f" {s.get('worker_seconds') or 0:.1f} worker-s"
    )


# -- small HTTP helpers --------------------------------------------------------------


async def post(session: aiohttp.ClientSession, url: str, body: payloads.Body) -> tuple[int, float]:
    """One request: (status, seconds from sending to the last byte); status 0: no answer."""
    began = time.monotonic()
    headers = {"Content-Type": body.content_type}
    try:
        async with session.post(url, data=body.data, headers=headers) as response:
            await response.read()
            return response.status, time.monotonic() - began
    except (aiohttp.ClientError, TimeoutError):
        return NO_RESPONSE, time.monotonic() - began


async def get_status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url.rstrip("/") + "/status") as response:
        answer: dict[str, dict[str, Any]] = await response.json()
        return answer["models"]


async def wait_live(url: str, model: str, most: int, timeout: float) -> float:
    """Wait until `model` has at most `most` live workers; returns the seconds waited."""
    began = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() - began < timeout:
            try:
                workers = (await get_status(session, url))[model]["workers"]
            except (aiohttp.ClientError, TimeoutError, ValueError):
                workers = None  # a slow or failed answer: ask again
            if workers is not None and sum(w["state"] in status.LIVE for w in workers) <= most:
                return time.monotonic() - began
            await asyncio.sleep(POLL_S)
    log.warning("%s: still more than %d workers after %g s; going on", url, most, timeout)
    return time.monotonic() - began


# -- 0. calibration ------------------------------------------------------------------


async def calibrate(fixed_1: str, fixed_2: str, body: payloads.Body, plan: Plan) -> Calibration:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(3):  # untimed: the first requests of a fresh server
            await post(session, fixed_1 + "/predict", body)
        singles = []
        for _ in range(plan.single_requests):
            code, seconds = await post(session, fixed_1 + "/predict", body)
            if code == 200:
                singles.append(seconds * 1e3)
    c1, failed_1 = await saturation(fixed_1, body, plan.saturation_s)
    c2, failed_2 = await saturation(fixed_2, body, plan.saturation_s)
    return Calibration(singles, c1, c2, failed_1 + failed_2)


async def saturation(url: str, body: payloads.Body, seconds: float) -> tuple[float, int]:
    """Closed loop, SATURATION_CONCURRENCY clients: 200 answers per second after 1 s."""
    connector = aiohttp.TCPConnector(limit=SATURATION_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    began = time.monotonic()
    window = (began + 1.0, began + 1.0 + seconds)
    done: list[float] = []
    failed = 0

    async def client() -> None:
        nonlocal failed
        while time.monotonic() < window[1]:
            code, _ = await post(session, url + "/predict", body)
            if code == 200:
                done.append(time.monotonic())
            else:
                failed += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client() for _ in range(SATURATION_CONCURRENCY)))
    counted = sum(window[0] <= t < window[1] for t in done)
    return counted / seconds, failed


# -- schedules -----------------------------------------------------------------------


def make_schedules(directory: Path, rates: Rates, plan: Plan, seed: int) -> dict[str, Path]:
    paths = {}
    duration, at, width = plan.spike
    spike = Shape("spike", rates.base, duration, rates.peak, at, width)
    paths["spike"] = _save_shape(directory / "spike.jsonl", spike, seed)
    mean = (rates.peak + rates.trough) / 2
    diurnal = Shape("sine", mean, plan.diurnal_s, rates.peak, period=plan.diurnal_s)
    paths["diurnal"] = _save_shape(directory / "diurnal.jsonl", diurnal, seed + 1)

    # Base load first for longer than the idle timeout, so that whatever the pool had
    # (zero, or two from an earlier burst) it holds exactly one warm worker at the first
    # burst; then bursts, each followed by base load long enough to scale back to one.
    lead, width, after = plan.burst
    steps = [(rates.base, lead)] + [(rates.peak, width), (rates.base, after)] * plan.bursts
    pieces = [
        (schedule.make(Shape("constant", rate, seconds), seed=seed + 10 + i), seconds)
        for i, (rate, seconds) in enumerate(steps)
    ]
    starts = [lead + i * (width + after) for i in range(plan.bursts)]
    paths["bursts"] = _save_composite(
        directory / "bursts.jsonl",
        schedule.concatenate(pieces),
        f"{rates.base:g} req/s for {lead:g} s, then {plan.bursts} x ({rates.peak:g} req/s "
        f"for {width:g} s, {rates.base:g} req/s for {after:g} s)",
        sum(seconds for _, seconds in steps),
        seed,
        {"bursts": [[s, s + width] for s in starts], "arrivals": "even"},
    )

    models = ["a", "b"]
    pieces = []
    segments = []
    for i in range(plan.alternations):
        model = models[i % 2]
        made = schedule.make(
            Shape("poisson", rates.peak, plan.alternation_s),
            seed=seed + 50 + i,
            models=[Choice(model)],
        )
        pieces.append((made, plan.alternation_s))
        segments.append([model, i * plan.alternation_s, (i + 1) * plan.alternation_s])
    paths["alternating"] = _save_composite(
        directory / "alternating.jsonl",
        schedule.concatenate(pieces),
        f"{plan.alternations} bursts of {plan.alternation_s:g} s at {rates.peak:g} req/s, "
        "alternating a, b",
        plan.alternations * plan.alternation_s,
        seed,
        {"segments": segments, "models": [asdict(Choice(m)) for m in models]},
    )
    return paths


def _save_shape(path: Path, shape: Shape, seed: int) -> Path:
    shape = shape.resolved()
    requests = schedule.make(shape, seed=seed, arrivals=ARRIVALS)
    return _save(path, requests, seed, {"kind": shape.kind, "shape": asdict(shape)})


def _save_composite(
    path: Path,
    requests: list[Request],
    description: str,
    duration: float,
    seed: int,
    extra: dict[str, Any],
) -> Path:
    head = {"kind": "composite", "description": description, "duration": duration}
    return _save(path, requests, seed, head, extra)


def _save(
    path: Path,
    requests: list[Request],
    seed: int,
    head: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """`requests` and their meta: `head`, what every schedule here shares, then `extra`."""
    meta = {
        **head,
        "arrivals": ARRIVALS,
        "seed": seed,
        "mix": "round-robin",
        "models": [],
        "payloads": [],
        "requests": len(requests),
        **(extra or {}),
    }
    schedule.save(path, requests, meta)
    return path


# -- 1. autoscaler against fixed pools -----------------------------------------------


async def pools(
    servers: dict[str, ServerProcess], paths: dict[str, Path], out: Path, model: str, slo_ms: float
) -> None:
    for config in ("fixed-1", "fixed-2", "autoscaler"):
        url = servers[config].url()
        for kind in data.SCHEDULE_KINDS:
            if config == "autoscaler":  # every autoscaler run starts from zero workers
                await wait_live(url, model, 0, IDLE_TIMEOUT_S + 30)
            directory = data.pool_run_dir(out, kind, config)
            await load_run(url, paths[kind], config, directory, slo_ms)
        if config != "autoscaler":
            await asyncio.to_thread(servers.pop(config).stop)  # its memory back for the rest
    for kind in data.SCHEDULE_KINDS:
        saved = [results.load(data.pool_run_dir(out, kind, c)) for c in data.CONFIG_NAMES]
        report.write_comparison(out / "exp1-pools" / f"{kind}-compare", saved)


# -- 2. burst reaction ---------------------------------------------------------------


async def reaction(server: ServerProcess, path: Path, out: Path, model: str, slo_ms: float) -> None:
    url = server.url()
    await wait_live(url, model, 1, IDLE_TIMEOUT_S + 30)  # the schedule's lead-in does the rest
    await load_run(url, path, "bursts", data.bursts_run_dir(out), slo_ms)


# -- 3. cold start from zero ---------------------------------------------------------


async def cold(server: ServerProcess, body: payloads.Body, model: str, plan: Plan) -> list[ColdRep]:
    url = server.url()
    reps = []
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(plan.cold_reps):
            waited = await wait_live(url, model, 0, COLD_IDLE_TIMEOUT_S + 30)
            code, seconds = await post(session, url + "/predict", body)
            workers = (await get_status(session, url))[model]["workers"]
            answers = [
                await post(session, url + "/predict", body) for _ in range(plan.warm_requests)
            ]
            warm = [t * 1e3 for got, t in answers if got == 200] or [float("nan")]
            started = [w for w in workers if w["state"] in status.LIVE and w["startup_s"]]
            startup = started[0]["startup_s"] if started else None
            reps.append(ColdRep(waited, seconds * 1e3, warm, startup, code))
            _say(f"  cold {seconds * 1e3:.0f} ms, warm median {statistics.median(warm):.0f} ms")
    return reps


# -- the whole thing -----------------------------------------------------------------


def _say(text: str) -> None:
    elapsed = time.monotonic() - _BEGAN
    minutes, seconds = divmod(int(elapsed), 60)
    print(f"[{minutes:02d}:{seconds:02d}] {text}", flush=True)


def _link_models(directory: Path, model: Path) -> list[Path]:
    """a.pt and b.pt: the same file under two names (symlinks, else copies)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("a", "b"):
        path = directory / f"{name}.pt"
        if path.exists() or path.is_symlink():
            path.unlink()
        try:
            path.symlink_to(model.resolve())
        except OSError:
            shutil.copyfile(model, path)
        paths.append(path)
    return paths


async def run_all(args: argparse.Namespace) -> Path:
    began = time.monotonic()
    plan = QUICK if args.quick else FULL
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    model_path = args.model or await asyncio.to_thread(make_resnet18, out)
    model = model_path.stem
    body = payloads.Body(payloads.default_jpeg(), "image/jpeg")
    extra = list(COMMON)
    if args.threads_per_worker is not None:
        extra += ["--threads-per-worker", str(args.threads_per_worker)]
    two = _link_models(out / "exp4-two-models" / "models", model_path)

    flags = {name: [*config, "--model", str(model_path)] for name, config in CONFIGS.items()}
    flags["cold"] = [*COLD, "--model", str(model_path)]
    flags["two-models"] = [*TWO_MODELS, *(f for p in two for f in ("--model", str(p)))]
    servers = {
        name: ServerProcess(name, [*f, *extra], out / "logs" / f"server-{name}.log")
        for name, f in flags.items()
    }
    facts = Facts(
        mode="quick" if args.quick else "full",
        argv=sys.argv,
        model_path=str(model_path),
        slo_factor=SLO_FACTOR,
        plan=asdict(plan),
        commands={name: s.command for name, s in servers.items()},
        boots={},
        load_before=list(load_before),
    )
    try:
        _say(f"booting {len(servers)} servers: {', '.join(servers)}")
        for server in servers.values():
            await asyncio.to_thread(server.url)
        facts.boots = {name: s.boot_s for name, s in servers.items()}
        _say("  " + ", ".join(f"{n} {b:.1f} s" for n, b in facts.boots.items() if b is not None))

        _say("0. calibrating")
        cal = await calibrate(servers["fixed-1"].url(), servers["fixed-2"].url(), body, plan)
        facts.calibration, facts.rates = cal, (rates := choose_rates(cal))
        _say(
            f"  single {cal.single_p50_ms:.0f} ms, c1 {cal.c1:.1f}/s, c2 {cal.c2:.1f}/s -> "
            f"SLO {rates.slo_ms:g} ms, base {rates.base:g}, peak {rates.peak:g}/s"
        )
        paths = make_schedules(out / "schedules", rates, plan, args.seed)
        facts.schedules = {kind: str(path) for kind, path in paths.items()}
        data.save_facts(out, facts)

        _say("1. autoscaler against fixed pools")
        await pools(servers, paths, out, model, rates.slo_ms)

        _say("2. burst reaction")
        await reaction(servers["autoscaler"], paths["bursts"], out, model, rates.slo_ms)
        await asyncio.to_thread(servers.pop("autoscaler").stop)

        _say("3. cold start from zero")
        facts.cold = await cold(servers["cold"], body, model, plan)
        await asyncio.to_thread(servers.pop("cold").stop)

        _say("4. two models, alternating bursts")
        url = servers["two-models"].url()
        directory = data.two_models_run_dir(out)
        await load_run(url, paths["alternating"], "two-models", directory, rates.slo_ms)
    finally:
        await asyncio.to_thread(stop_all, list(servers.values()))
        facts.load_after = list(os.getloadavg())
        facts.runtime_s = time.monotonic() - began
        data.save_facts(out, facts)
    return write.render(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m research.experiments",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for everything")
    parser.add_argument("--quick", action="store_true", help="about 3 minutes instead of 12")
    parser.add_argument(
        "--model",
        type=Path,
        help="a TorchScript image classifier (default: an untrained resnet18, scripted into --out)",
    )
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        help="passed to every server (default: autodep's adaptive threads)",
    )
    parser.add_argument("--seed", type=int, default=0, help="of every schedule")
    parser.add_argument(
        "--report-only", action="store_true", help="redo DIR/experiments.md from DIR, run nothing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.report_only:
        path = write.render(args.out)
    else:
        began = time.monotonic()
        path = asyncio.run(run_all(args))
        _say(f"{time.monotonic() - began:.0f} s in all")
    _say(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
