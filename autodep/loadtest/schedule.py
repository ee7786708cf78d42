"""Request schedules: when each request is sent, to which model, with which payload.

A schedule is made once, seeded, and saved, so that runs against different
servers (autoscaler against a fixed pool, ...) send exactly the same requests:

    shape (rate over time) --arrivals--> times --mix--> [Request(t, model, payload)]
                                                              |
                                                  schedule.jsonl / .csv (+ .meta.json)

Arrival times come from the shape by time rescaling: with Λ(t) the cumulative
rate, a unit-rate sequence u_1 < u_2 < ... maps to t_k = Λ⁻¹(u_k). Poisson
arrivals take exponential gaps for u (a non-homogeneous Poisson process);
even arrivals take u_k = k - 1/2 (as regular as the rate allows).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("constant", "poisson", "ramp", "step", "spike", "sine")
ALIASES = {"diurnal": "sine"}
ARRIVALS = ("poisson", "even")
MIXES = ("round-robin", "random")
GRID_S = 1e-3  # resolution of the cumulative rate Λ(t)

RateFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Request:
    t: float  # seconds from the start of the run
    model: str | None  # None: POST /predict (a server with one model)
    payload: str | None  # a file path; None: the executor's default JPEG


@dataclass(frozen=True)
class Shape:
    """A rate over time, in requests per second. `rate` is the base (or mean) rate."""

    kind: str
    rate: float
    duration: float
    peak: float | None = None  # ramp: end rate; step, spike: raised rate; sine: top
    at: float | None = None  # step, spike: when the raised rate starts
    width: float | None = None  # step, spike: how long it lasts (step: to the end)
    period: float | None = None  # sine: one cycle, trough to trough

    def resolved(self) -> Shape:
        """The same shape with every default filled in (what gets saved)."""
        d, r = self.duration, self.rate
        by_kind: dict[str, dict[str, float | None]] = {
            "ramp": {"peak": 2 * r},
            "step": {"peak": 2 * r, "at": d / 2, "width": None},
            "spike": {"peak": 5 * r, "at": 0.4 * d, "width": min(5.0, 0.1 * d)},
            "sine": {"peak": 2 * r, "period": d},
        }
        defaults = by_kind.get(self.kind, {})
        filled = {
            k: v if getattr(self, k) is None else getattr(self, k) for k, v in defaults.items()
        }
        return Shape(**{**asdict(self), **filled})

    def rate_fn(self) -> RateFn:
        s = self.resolved()
        base = s.rate
        peak = s.rate if s.peak is None else s.peak
        if s.kind in ("constant", "poisson"):
            return lambda t: np.full_like(t, base)
        if s.kind == "ramp":
            return lambda t: base + (peak - base) * np.clip(t / s.duration, 0, 1)
        if s.kind in ("step", "spike"):
            start = 0.0 if s.at is None else s.at
            end = math.inf if s.width is None else start + s.width
            return lambda t: np.where((t >= start) & (t < end), peak, base)
        if s.kind == "sine":
            period = s.period or s.duration
            # Starts at the trough (night), tops at half a period; averages `rate`.
            return lambda t: np.maximum(0, base - (peak - base) * np.cos(2 * np.pi * t / period))
        raise ValueError(f"unknown schedule kind {s.kind!r}; one of {', '.join(KINDS)}")


def arrival_times(
    rate: RateFn, duration: float, process: str, rng: np.random.Generator
) -> np.ndarray:
    """Send times in [0, duration) for requests arriving at `rate` (see the module doc)."""
    if process not in ARRIVALS:
        raise ValueError(f"unknown arrival process {process!r}; one of {', '.join(ARRIVALS)}")
    grid = np.linspace(0, duration, max(2, math.ceil(duration / GRID_S) + 1))
    rates = np.maximum(rate(grid), 0)
    cumulative = np.concatenate([[0.0], np.cumsum((rates[1:] + rates[:-1]) / 2 * np.diff(grid))])
    total = cumulative[-1]
    if process == "even":
        units = np.arange(0.5, total, 1.0)
    else:
        expected = int(total + 10 * math.sqrt(total) + 10)
        units = np.cumsum(rng.exponential(1.0, expected))
        while units[-1] < total:  # ran short (vanishingly rare): draw more
            units = np.concatenate([units, units[-1] + np.cumsum(rng.exponential(1.0, expected))])
        units = units[units < total]
    # Λ is non-decreasing; where the rate is 0 it is flat, and interp picks a point on the flat.
    return np.interp(units, cumulative, grid)


# -- which model, which payload ------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """A model or payload with its share of the requests; `model` binds a payload to one model."""

    value: str
    weight: float = 1.0
    model: str | None = None

    @classmethod
    def parse(cls, text: str, bindable: bool = False) -> Choice:
        """`NAME`, `NAME:WEIGHT`; payloads also `MODEL=FILE[:WEIGHT]`."""
        model = None
        if bindable and "=" in text:
            model, text = text.split("=", 1)
        value, weight = text, 1.0
        head, sep, tail = text.rpartition(":")
        if sep and head and _is_number(tail):
            value, weight = head, float(tail)
        if not weight > 0:
            raise ValueError(f"weight must be positive in {text!r}")
        return cls(value, weight, model)


class Picker:
    """Picks among weighted choices: smooth weighted round-robin, or seeded random."""

    def __init__(self, choices: Sequence[Choice], mix: str, rng: np.random.Generator) -> None:
        if mix not in MIXES:
            raise ValueError(f"unknown mix {mix!r}; one of {', '.join(MIXES)}")
        self._choices = list(choices)
        self._weights = np.array([c.weight for c in choices], dtype=np.float64)
        self._current = np.zeros(len(choices))
        self._random = mix == "random"
        self._rng = rng

    def pick(self) -> str | None:
        if not self._choices:
            return None
        if self._random:
            i = int(self._rng.choice(len(self._choices), p=self._weights / self._weights.sum()))
        else:  # nginx's smooth weighted round-robin: a:2 b:1 gives a b a, a b a, ...
            self._current += self._weights
            i = int(np.argmax(self._current))
            self._current[i] -= self._weights.sum()
        return self._choices[i].value


def assign(
    times: Iterable[float],
    models: Sequence[Choice],
    payloads: Sequence[Choice],
    mix: str,
    rng: np.random.Generator,
) -> list[Request]:
    """A model for each time, then one of the payloads meant for that model (or for any)."""
    unknown = {p.model for p in payloads if p.model is not None} - {m.value for m in models}
    if unknown:
        raise ValueError(f"payloads bound to models not in --model: {', '.join(sorted(unknown))}")
    model_picker = Picker(models, mix, rng)
    payload_pickers: dict[str | None, Picker] = {}
    requests = []
    for t in times:
        model = model_picker.pick()
        if model not in payload_pickers:
            usable = [p for p in payloads if p.model in (None, model)]
            payload_pickers[model] = Picker(usable, mix, rng)
        requests.append(Request(round(float(t), 6), model, payload_pickers[model].pick()))
    return requests


def make(
    shape: Shape,
    *,
    seed: int = 0,
    arrivals: str | None = None,
    models: Sequence[Choice] = (),
    payloads: Sequence[Choice] = (),
    mix: str = "round-robin",
) -> list[Request]:
    """A seeded schedule of `shape`; `arrivals` defaults to `default_arrivals(shape.kind)`."""
    if shape.rate < 0 or shape.duration <= 0:
        raise ValueError("the rate must be at least 0 and the duration above 0")
    process = arrivals or default_arrivals(shape.kind)
    # Separate streams: changing the mix never moves the arrival times.
    time_rng, mix_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    times = arrival_times(shape.rate_fn(), shape.duration, process, time_rng)
    return assign(times, models, payloads, mix, mix_rng)


def concatenate(pieces: Sequence[tuple[Sequence[Request], float]]) -> list[Request]:
    """(requests, duration) pieces one after another: each shifted by the durations before it."""
    joined: list[Request] = []
    offset = 0.0
    for requests, duration in pieces:
        joined += [Request(round(r.t + offset, 6), r.model, r.payload) for r in requests]
        offset += duration
    return joined


def default_arrivals(kind: str) -> str:
    return "even" if kind == "constant" else "poisson"


def replay(
    source: Path,
    models: Sequence[Choice] = (),
    payloads: Sequence[Choice] = (),
    *,
    mix: str = "round-robin",
    seed: int = 0,
    column: str | None = None,
    speed: float = 1.0,
    duration: float | None = None,
) -> list[Request]:
    """The timestamps of a trace (see `replay_times`), cut at `duration`, with models mixed in."""
    if not speed > 0:
        raise ValueError(f"--speed must be above 0, not {speed}")
    times = replay_times(source, column, speed)
    if duration is not None:
        times = times[times < duration]
    return assign(times, models, payloads, mix, np.random.default_rng(seed))


def replay_times(path: Path, column: str | None = None, speed: float = 1.0) -> np.ndarray:
    """Timestamps (seconds) from a CSV: column `column`, else `t`, else the first; start at 0."""
    with path.open(newline="") as file:
        rows = [row for row in csv.reader(file) if row and row[0].strip()]
    if not rows:
        raise ValueError(f"{path}: no timestamps")
    header = rows[0] if not _is_number(rows[0][0]) or column is not None else None
    index = 0
    if header is not None:
        names = [h.strip() for h in header]
        wanted = column or ("t" if "t" in names else names[0])
        if wanted not in names:
            raise ValueError(f"{path}: no column {wanted!r} (columns: {', '.join(names)})")
        index = names.index(wanted)
        rows = rows[1:]
    times = np.sort(np.array([float(row[index]) for row in rows], dtype=np.float64))
    shifted: np.ndarray = (times - times[0]) / speed
    return shifted


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- files -----------------------------------------------------------------------


def save(path: Path, requests: Sequence[Request], meta: dict[str, Any]) -> None:
    """Requests as JSONL (or CSV if `path` ends in .csv); `meta` beside it in FILE.meta.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        if path.suffix == ".csv":
            writer = csv.writer(file)
            writer.writerow(["t", "model", "payload"])
            writer.writerows([r.t, r.model or "", r.payload or ""] for r in requests)
        else:
            file.writelines(json.dumps(asdict(r)) + "\n" for r in requests)
    meta_path(path).write_text(json.dumps(meta, indent=2) + "\n")


def load(path: Path) -> list[Request]:
    with path.open(newline="") as file:
        if path.suffix == ".csv":
            rows: list[dict[str, Any]] = list(csv.DictReader(file))
        else:
            rows = [json.loads(line) for line in file if line.strip()]
    requests = [
        Request(float(row["t"]), row.get("model") or None, row.get("payload") or None)
        for row in rows
    ]
    return sorted(requests, key=lambda r: r.t)


def load_meta(path: Path) -> dict[str, Any]:
    """What made the schedule ({} for a hand-written one)."""
    try:
        meta: dict[str, Any] = json.loads(meta_path(path).read_text())
    except FileNotFoundError:
        return {}
    return meta


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")
