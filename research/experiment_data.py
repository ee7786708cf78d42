"""What `research.experiments` leaves in its directory, and what the report reads back from it.

    DIR/experiments.json        how it ran (Facts): mode, command, model, servers, boot
                                times, load averages, plan, calibration, rates, schedules,
                                the cold-start repetitions
    DIR/exp1-pools/{spike,diurnal}-{autoscaler,fixed-1,fixed-2}/
    DIR/exp2-reaction/bursts/   `bench run` directories, each with status.jsonl
    DIR/exp4-two-models/alternating/    (the /status polls) and scaling.json

`load(DIR)` reads all of it back and derives what the report tabulates, so a
report can be redone (`python -m research.experiments --out DIR --report-only`).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autodep.loadtest import results, stats
from autodep.loadtest.records import RequestRecord, ServerSample
from research import status

FACTS = "experiments.json"
CONFIG_NAMES = ("autoscaler", "fixed-1", "fixed-2")
SCHEDULE_KINDS = ("spike", "diurnal")
TWO_MODELS = ("a", "b")


def pool_run_dir(out: Path, kind: str, config: str) -> Path:
    return out / "exp1-pools" / f"{kind}-{config}"


def bursts_run_dir(out: Path) -> Path:
    return out / "exp2-reaction" / "bursts"


def two_models_run_dir(out: Path) -> Path:
    return out / "exp4-two-models" / "alternating"


# -- what the experiments measured directly -----------------------------------------


@dataclass(frozen=True)
class Calibration:
    single_ms: list[float]  # fixed-1, one request at a time
    c1: float  # fixed-1 saturation throughput, 200 answers per second
    c2: float  # fixed-2
    saturation_failed: int  # non-200 answers during the saturation runs

    @property
    def single_p50_ms(self) -> float:
        return statistics.median(self.single_ms)


@dataclass(frozen=True)
class Rates:
    slo_ms: float
    base: float  # well within one worker
    peak: float  # above one worker's capacity, below two's
    trough: float  # the diurnal night
    window: bool  # c2 was at least 10 % above c1: room for a peak between them


@dataclass(frozen=True)
class ColdRep:
    waited_s: float  # until the pool had scaled to zero
    cold_ms: float  # the first request, with no worker
    warm_ms: list[float]  # the requests after it, one at a time
    startup_s: float | None  # the new worker's launch-to-ready time (server's /status)
    cold_status: int


@dataclass
class Facts:
    mode: str
    argv: list[str]
    model_path: str
    slo_factor: float
    plan: dict[str, Any]
    commands: dict[str, list[str]]
    boots: dict[str, float | None]
    load_before: list[float]
    load_after: list[float] = field(default_factory=list)
    runtime_s: float = 0.0
    calibration: Calibration | None = None
    rates: Rates | None = None
    schedules: dict[str, str] = field(default_factory=dict)
    cold: list[ColdRep] = field(default_factory=list)


def save_facts(out: Path, facts: Facts) -> None:
    (out / FACTS).write_text(json.dumps(asdict(facts), indent=1) + "\n")


def load_facts(out: Path) -> Facts:
    raw = json.loads((out / FACTS).read_text())
    raw["calibration"] = Calibration(**raw["calibration"]) if raw.get("calibration") else None
    raw["rates"] = Rates(**raw["rates"]) if raw.get("rates") else None
    raw["cold"] = [ColdRep(**r) for r in raw.get("cold", [])]
    return Facts(**raw)


# -- runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    label: str
    directory: Path
    summary: dict[str, Any]
    records: list[RequestRecord]
    samples: list[ServerSample]
    polls: list[status.Poll]
    events: list[status.ScalingEvent]

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = self.summary.get("run", {}).get("schedule_meta", {})
        return meta

    @property
    def duration(self) -> float:
        return float(self.meta.get("shape", {}).get("duration", self.meta.get("duration", 0)))


def open_run(directory: Path) -> Run:
    saved = results.load(directory)
    polls_path = directory / "status.jsonl"
    polls = status.load(polls_path) if polls_path.exists() else []
    # /status keeps the last 20 decisions: those from before this run are not its own.
    events = [e for e in status.scaling_events(polls) if e.t >= polls[0].t] if polls else []
    return Run(saved.label, directory, saved.summary, saved.records, saved.samples, polls, events)


# -- what the report derives ---------------------------------------------------------


@dataclass(frozen=True)
class ReactionRow:
    source: str  # which run, which burst
    reaction: status.Reaction
    busy_s: float | None  # first /metrics scrape with more busy workers than were live before


def reaction_rows(bursts: Run | None, spike: Run | None, model: str) -> list[ReactionRow]:
    rows = []
    if bursts is not None:
        for start, end in bursts.meta.get("bursts", []):
            rows.append(_reaction_row(f"bursts, t = {start:g} s", bursts, model, start, end))
    if spike is not None:
        shape = spike.meta["shape"]
        end = shape["at"] + shape["width"]
        rows.append(_reaction_row("exp. 1 spike (autoscaler)", spike, model, shape["at"], end))
    return rows


def _reaction_row(source: str, run: Run, model: str, start: float, end: float) -> ReactionRow:
    found = status.reaction(run.polls, run.events, start, model, until=end)
    busy = next(
        (
            s.t - start
            for s in run.samples
            if s.model == model and start <= s.t < end and s.busy > found.live_before
        ),
        None,
    )
    return ReactionRow(source, found, busy)


def unqueued_scale_ups(run: Run, window_s: float = 2.0) -> list[status.ScalingEvent]:
    """Scale-ups above one worker with nothing queued at any poll of the `window_s` before.

    The policy's upscale window is 2 s; with an empty queue throughout, the need it saw
    came from busy time alone (one long request can keep a worker busy past
    target_utilisation x tick), and the new worker had nothing waiting for it.
    """
    found = []
    for event in run.events:
        if event.after <= event.before or event.before < 1:
            continue
        before = [p for p in run.polls if event.t - window_s <= p.t <= event.t]
        queued = [p.models.get(event.model, {}).get("queue_depth", 0) for p in before]
        if before and not any(queued):
            found.append(event)
    return found


@dataclass(frozen=True)
class Segment:
    model: str  # the busy one
    start: float
    end: float
    to_full_s: float | None  # until the busy model had 2 live workers (polls)
    other_zero_s: float | None  # until the other model had no live worker
    most_live: int  # most workers of both models live at once (polls)
    most_live_at: float | None  # when (run clock)
    summary: dict[str, Any]  # the busy model's requests in the segment


def segments(run: Run, slo_ms: float, models: tuple[str, ...] = TWO_MODELS) -> list[Segment]:
    found = []
    for model, start, end in run.meta.get("segments", []):
        other = next(m for m in models if m != model)
        inside = [p for p in run.polls if start <= p.t < end]
        full = next((p.t - start for p in inside if p.live(model) >= 2), None)
        zero = next((p.t - start for p in inside if p.live(other) == 0), None)
        totals = [(sum(p.live(m) for m in models), p.t) for p in inside]
        most, most_at = max(totals, default=(0, None), key=lambda x: x[0])
        mine = [r for r in run.records if r.model == model and start <= r.scheduled_s < end]
        summary = stats.summarize(mine, [], slo_ms, end - start)
        found.append(Segment(model, start, end, full, zero, most, most_at, summary))
    return found


# -- all of it -----------------------------------------------------------------------


@dataclass(frozen=True)
class Experiments:
    out: Path
    facts: Facts
    pools: dict[str, dict[str, Run]]  # schedule kind → configuration → run
    bursts: Run | None
    reactions: list[ReactionRow]
    two_models: Run | None
    segments: list[Segment]

    @property
    def model(self) -> str:
        return Path(self.facts.model_path).stem

    @property
    def slo_ms(self) -> float:
        return self.facts.rates.slo_ms if self.facts.rates else 100.0


def load(out: Path) -> Experiments:
    facts = load_facts(out)
    pools: dict[str, dict[str, Run]] = {}
    for kind in SCHEDULE_KINDS:
        runs = {
            config: open_run(pool_run_dir(out, kind, config))
            for config in CONFIG_NAMES
            if (pool_run_dir(out, kind, config) / results.REQUESTS).exists()
        }
        if runs:
            pools[kind] = runs
    bursts = _maybe(bursts_run_dir(out))
    two = _maybe(two_models_run_dir(out))
    model = Path(facts.model_path).stem
    spike = pools.get("spike", {}).get("autoscaler")
    slo_ms = facts.rates.slo_ms if facts.rates else 100.0
    return Experiments(
        out=out,
        facts=facts,
        pools=pools,
        bursts=bursts,
        reactions=reaction_rows(bursts, spike, model),
        two_models=two,
        segments=segments(two, slo_ms) if two else [],
    )


def _maybe(directory: Path) -> Run | None:
    return open_run(directory) if (directory / results.REQUESTS).exists() else None
