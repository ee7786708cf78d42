"""autodep.loadtest.stats on hand-made records, and the pure parts around it: the /metrics
parser (autodep.loadtest.capture), the CSV records and the Markdown report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autodep.loadtest import report, stats
from autodep.loadtest.capture import Scrape, parse_metrics, to_sample
from autodep.loadtest.records import RequestRecord, ServerSample, read_csv, write_csv


def req(
    scheduled: float, latency: float, status: int = 200, lag: float = 0.0, model: str = "m"
) -> RequestRecord:
    error = "" if status == 200 else "failed"
    return RequestRecord(0, model, "", scheduled, scheduled + lag, latency, status, error)


def sample(
    t: float,
    *,
    model: str = "m",
    starting: int = 0,
    idle: int = 0,
    busy: int = 0,
    stopping: int = 0,
    desired: float | None = None,
    queue_depth: int = 0,
    batch_count: float = 0.0,
    batch_sum: float = 0.0,
    batch_mean: float | None = None,
) -> ServerSample:
    return ServerSample(
        t,
        model,
        starting,
        idle,
        busy,
        stopping,
        desired,
        queue_depth,
        batch_count,
        batch_sum,
        batch_mean,
    )


RUN = [
    req(0.0, 0.010),
    req(0.5, 0.020),
    req(1.0, 0.030),
    req(1.5, 0.200),  # answered, over a 100 ms SLO
    req(2.0, 0.001, status=503),
    req(2.5, 5.000, status=0),  # timed out
]


# -- client side -----------------------------------------------------------------


def test_latency_quantiles_of_successes_only() -> None:
    latency = stats.latency_ms(RUN)
    assert latency is not None
    assert latency["max"] == pytest.approx(200)
    assert latency["p50"] == pytest.approx(25)
    assert latency["mean"] == pytest.approx(65)
    assert stats.latency_ms([req(0, 1, status=503)]) is None


def test_quantiles_interpolate() -> None:
    q = stats.quantiles_ms([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert q is not None
    assert (q["p50"], q["p90"], q["p99"], q["max"]) == pytest.approx((50.5, 90.1, 99.01, 100))
    assert stats.quantiles_ms([]) is None


def test_slo_attainment_counts_every_request() -> None:
    assert stats.slo_attainment(RUN, 0.1) == pytest.approx(3 / 6)
    assert stats.slo_attainment(RUN, 1.0) == pytest.approx(4 / 6)
    assert stats.slo_attainment([], 0.1) is None


def test_errors_by_status() -> None:
    assert stats.errors_by_status(RUN) == {"503": 1, "no response": 1}
    assert stats.errors_by_status(RUN[:2]) == {}


def test_throughput_and_offered_rate() -> None:
    # 4 answers between the first send (0.0) and the last answer (2.5 + 5.0).
    assert stats.throughput(RUN) == pytest.approx(4 / 7.5)
    assert stats.throughput([req(0, 1, status=503)]) == 0
    assert stats.offered_rate(RUN, duration=3.0) == pytest.approx(2)
    assert stats.offered_rate(RUN) == pytest.approx(6 / 2.5)
    assert stats.offered_rate([]) == 0


def test_send_error() -> None:
    records = [req(i, 0.01, lag=lag) for i, lag in enumerate([0.001] * 99 + [0.050])]
    error = stats.send_error_ms(records)
    assert error is not None
    assert error["median"] == pytest.approx(1)
    assert error["max"] == pytest.approx(50)
    assert 1 <= error["p99"] <= 50
    assert stats.send_error_ms([]) is None


def test_per_second_bins() -> None:
    counts = stats.per_second([0.0, 0.2, 0.99, 1.0, 2.5, 2.999], duration=2.5)
    assert counts.tolist() == [3, 1, 2]


# -- server side -----------------------------------------------------------------


def test_worker_seconds_holds_each_count_until_the_next_scrape() -> None:
    samples = [sample(0, idle=1), sample(1, busy=2), sample(3, idle=1, starting=1), sample(4)]
    assert stats.worker_seconds(samples) == pytest.approx(1 + 2 * 2 + 2)
    other = [sample(0, idle=1, model="n"), sample(10, idle=1, model="n")]
    assert stats.worker_seconds(samples + other) == pytest.approx(7 + 10)
    stopping = [sample(0, stopping=3), sample(5)]
    assert stats.worker_seconds(stopping) == 0  # stopping workers are not live
    assert stats.worker_seconds([sample(0, idle=4)]) == 0


def test_mean_batch_size_over_the_run() -> None:
    samples = [
        sample(0, batch_count=10, batch_sum=10),
        sample(1, batch_count=12, batch_sum=18),
        sample(2, batch_count=15, batch_sum=34),
    ]
    assert stats.mean_batch_size(samples) == pytest.approx(24 / 5)
    assert stats.mean_batch_size(samples[:1]) is None


def test_totals_sum_models_per_scrape() -> None:
    samples = [
        sample(0, idle=1, desired=1),
        sample(0, busy=2, model="n"),
        sample(1, busy=1, queue_depth=4),
    ]
    totals = stats.totals(samples)
    assert totals["t"].tolist() == [0, 1]
    assert totals["live"].tolist() == [3, 1]
    assert totals["queue_depth"].tolist() == [0, 4]
    assert totals["desired"][0] == 1 and math.isnan(totals["desired"][1])
    assert stats.totals([])["live"].size == 0


METRICS = """\
# HELP autodep_workers Worker processes by state.
# TYPE autodep_workers gauge
autodep_workers{model="r18",state="starting"} 1.0
autodep_workers{model="r18",state="idle"} 0.0
autodep_workers{model="r18",state="busy"} 2.0
autodep_workers{model="r18",state="stopping"} 0.0
# TYPE autodep_queue_depth gauge
autodep_queue_depth{model="r18"} 7.0
# TYPE autodep_requests counter
autodep_requests_total{code="404",model="unknown"} 3.0
# TYPE autodep_batch_size histogram
autodep_batch_size_bucket{le="1.0",model="r18"} 2.0
autodep_batch_size_bucket{le="+Inf",model="r18"} 5.0
autodep_batch_size_count{model="r18"} 5.0
autodep_batch_size_sum{model="r18"} 17.0
"""


def test_parse_metrics_without_desired_workers() -> None:
    scrapes = parse_metrics(METRICS)
    assert set(scrapes) == {"r18"}  # "unknown" only appears in a metric we do not watch
    r18 = scrapes["r18"]
    assert r18.workers == {"starting": 1, "idle": 0, "busy": 2, "stopping": 0}
    assert (r18.desired, r18.queue_depth, r18.batch_count, r18.batch_sum) == (None, 7, 5, 17)
    assert parse_metrics("") == {}


def test_parse_metrics_with_desired_workers() -> None:
    text = (
        METRICS + '# TYPE autodep_desired_workers gauge\nautodep_desired_workers{model="r18"} 3\n'
    )
    assert parse_metrics(text)["r18"].desired == 3


def test_samples_take_the_mean_batch_since_the_last_scrape() -> None:
    first = to_sample(0.0, "r18", Scrape({"idle": 1}, batch_count=5, batch_sum=17), None)
    assert first.batch_mean is None and first.live == 1 and first.busy == 0
    second = to_sample(1.0, "r18", Scrape(batch_count=9, batch_sum=41), first)
    assert second.batch_mean == pytest.approx(6)
    idle = to_sample(2.0, "r18", Scrape(batch_count=9, batch_sum=41), second)
    assert idle.batch_mean is None
    restarted = to_sample(3.0, "r18", Scrape(batch_count=2, batch_sum=4), idle)
    assert restarted.batch_mean == pytest.approx(2)


# -- records and report ------------------------------------------------------------


def test_records_round_trip_through_csv(tmp_path: Path) -> None:
    records = [*RUN, RequestRecord(7, "", "a, b.jpg", 1.25, 1.5, 0.125, 413, 'too "big"\n')]
    write_csv(tmp_path / "r.csv", records, RequestRecord)
    assert read_csv(tmp_path / "r.csv", RequestRecord) == records
    samples = [sample(0.5, idle=1, desired=2.0, batch_mean=1.5), sample(1.5)]
    write_csv(tmp_path / "s.csv", samples, ServerSample)
    assert read_csv(tmp_path / "s.csv", ServerSample) == samples


def test_summary_and_report() -> None:
    samples = [sample(0, idle=1, desired=1), sample(2, busy=2, desired=2), sample(3)]
    summary = stats.summarize(RUN, samples, slo_ms=100, duration=3.0)
    assert summary["requests"] == 6 and summary["ok"] == 4 and summary["failed"] == 2
    assert summary["worker_seconds"] == pytest.approx(4)
    assert summary["peak_workers"] == 2
    assert "models" not in summary
    summary["run"] = {"label": "test", "schedule": "s.jsonl", "url": "http://x"}
    text = report.run_report(summary, [Path("latency.png"), Path("workers.png")])
    assert "| SLO attainment | 50.0 % within 100 ms |" in text
    assert "| errors by status | 503: 1, no response: 1 |" in text
    assert "![workers](workers.png)" in text
    table = report.comparison([("a", summary), ("b", summary)], [])
    assert table.count("| a |") == 1 and table.count("| b |") == 1


def test_summary_of_a_run_without_answers_or_scrapes() -> None:
    records = [req(0, 1, status=503, model="a"), req(1, 1, status=0, model="b")]
    summary = stats.summarize(records, [], slo_ms=50)
    assert summary["latency_ms"] is None and summary["slo_attainment"] == 0
    assert summary["worker_seconds"] is None and summary["peak_workers"] is None
    assert set(summary["models"]) == {"a", "b"}
    assert "| latency p50 / p90 / p99 / max | — |" in report.run_report(summary, [])
    assert np.isfinite(summary["offered_rps"])
