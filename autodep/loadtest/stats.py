"""What a run's records add up to: pure functions of `RequestRecord`s and `ServerSample`s.

Definitions (times in seconds on the run clock, reported in ms where noted):
    offered rate    requests / schedule duration
    throughput      200 answers / (last answer - first send)
    latency         send to last byte, of the 200 answers only: p50, p90, p99, max
    SLO attainment  share of *all* requests answered 200 within the bound
    send error      actual - scheduled send time: median, p99, max (generator lag)
    worker-seconds  ∫ live workers dt, live = starting + idle + busy, each scrape's
                    count held until the next scrape, summed over models
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from autodep.loadtest.records import NO_RESPONSE, RequestRecord, ServerSample

QUANTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def quantiles_ms(seconds: Sequence[float]) -> dict[str, float] | None:
    """p50, p90, p99, max and mean in milliseconds; None without values."""
    if len(seconds) == 0:
        return None
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    result = {name: float(np.percentile(values, q)) for name, q in QUANTILES.items()}
    return {**result, "max": float(values.max()), "mean": float(values.mean())}


def latency_ms(records: Sequence[RequestRecord]) -> dict[str, float] | None:
    return quantiles_ms([r.latency_s for r in records if r.ok])


def send_error_ms(records: Sequence[RequestRecord]) -> dict[str, float] | None:
    """How late requests left: median, p99 and max in milliseconds."""
    if not records:
        return None
    values = np.array([r.send_error_s for r in records]) * 1e3
    return {
        "median": float(np.median(values)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
    }


def offered_rate(records: Sequence[RequestRecord], duration: float | None = None) -> float:
    """Requests per second the schedule asked for (over `duration`, else its span)."""
    if duration is None:
        duration = max((r.scheduled_s for r in records), default=0.0)
    return len(records) / duration if duration > 0 else 0.0


def throughput(records: Sequence[RequestRecord]) -> float:
    ok = [r for r in records if r.ok]
    if not ok:
        return 0.0
    span = max(r.done_s for r in records) - min(r.sent_s for r in records)
    return len(ok) / span if span > 0 else 0.0


def slo_attainment(records: Sequence[RequestRecord], slo_s: float) -> float | None:
    if not records:
        return None
    return sum(r.ok and r.latency_s <= slo_s for r in records) / len(records)


def errors_by_status(records: Sequence[RequestRecord]) -> dict[str, int]:
    """Failed requests by HTTP status ("no response" for timeouts, refusals, resets)."""
    counts = Counter(
        "no response" if r.status == NO_RESPONSE else str(r.status) for r in records if not r.ok
    )
    return dict(sorted(counts.items()))


def per_second(times: Sequence[float], duration: float) -> np.ndarray:
    """Counts of events in each whole second [0, 1), [1, 2), ... up to `duration`."""
    bins = max(1, int(np.ceil(duration)))
    counts, _ = np.histogram(np.asarray(times, dtype=np.float64), bins=bins, range=(0, bins))
    return counts


# -- server side -------------------------------------------------------------------


def by_model(samples: Sequence[ServerSample]) -> dict[str, list[ServerSample]]:
    series: defaultdict[str, list[ServerSample]] = defaultdict(list)
    for sample in samples:
        series[sample.model].append(sample)
    return {model: sorted(s, key=lambda x: x.t) for model, s in sorted(series.items())}


def worker_seconds(samples: Sequence[ServerSample]) -> float:
    total = 0.0
    for series in by_model(samples).values():
        for sample, following in itertools.pairwise(series):
            total += sample.live * (following.t - sample.t)
    return total


def mean_batch_size(samples: Sequence[ServerSample]) -> float | None:
    """Requests per model call over the whole run (all models together)."""
    images = batches = 0.0
    for series in by_model(samples).values():
        images += series[-1].batch_sum - series[0].batch_sum
        batches += series[-1].batch_count - series[0].batch_count
    return images / batches if batches > 0 else None


def totals(samples: Sequence[ServerSample]) -> dict[str, np.ndarray]:
    """Per scrape, summed over models: t, each state, live, desired (nan if absent), queue."""
    by_time: dict[float, list[ServerSample]] = defaultdict(list)
    for sample in samples:
        by_time[sample.t].append(sample)
    counts = ("starting", "idle", "busy", "stopping", "live", "queue_depth")
    columns: dict[str, list[float]] = {name: [] for name in ("t", *counts, "desired")}
    for t in sorted(by_time):
        group = by_time[t]
        columns["t"].append(t)
        for name in counts:
            columns[name].append(sum(getattr(s, name) for s in group))
        desired = [s.desired for s in group if s.desired is not None]
        columns["desired"].append(sum(desired) if desired else np.nan)
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


# -- all together ------------------------------------------------------------------


def summarize(
    records: Sequence[RequestRecord],
    samples: Sequence[ServerSample],
    slo_ms: float,
    duration: float | None = None,
) -> dict[str, Any]:
    """The numbers of summary.json (and of the report's table)."""
    ok = sum(r.ok for r in records)
    summary: dict[str, Any] = {
        "requests": len(records),
        "ok": ok,
        "failed": len(records) - ok,
        "offered_rps": offered_rate(records, duration),
        "throughput_rps": throughput(records),
        "latency_ms": latency_ms(records),
        "slo_ms": slo_ms,
        "slo_attainment": slo_attainment(records, slo_ms / 1e3),
        "errors": errors_by_status(records),
        "send_error_ms": send_error_ms(records),
        "worker_seconds": worker_seconds(samples) if samples else None,
        "peak_workers": max((int(x) for x in totals(samples)["live"]), default=None),
        "mean_batch_size": mean_batch_size(samples) if samples else None,
        "scrapes": len({s.t for s in samples}),
    }
    models = {r.model for r in records}
    if len(models) > 1:
        summary["models"] = {
            model or "(default)": _model_summary([r for r in records if r.model == model], slo_ms)
            for model in sorted(models)
        }
    return summary


def _model_summary(records: Sequence[RequestRecord], slo_ms: float) -> dict[str, Any]:
    return {
        "requests": len(records),
        "ok": sum(r.ok for r in records),
        "latency_ms": latency_ms(records),
        "slo_attainment": slo_attainment(records, slo_ms / 1e3),
    }
