"""Prometheus metrics, one registry per `Autodep` (several can live in one process).

Counters and histograms are updated as things happen; the state of the pools
(workers by state, queue depth, restarts) and of the model versions is read
when /metrics is scraped, as frozen snapshots their owners make (`PoolStats`,
`VersionStats`): a collector never reads another object's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class PoolStats:
    """One pool's state at a scrape (`ModelPool.stats()`)."""

    workers: Mapping[str, int]  # live workers by state ("starting", "idle", "busy", "stopping")
    queue_depth: int
    restarts: int  # workers that died unasked and were replaced
    desired: int
    scale_ups: int
    scale_downs: int


@dataclass(frozen=True)
class VersionStats:
    """The model versions at a scrape (`Repository.version_stats()`)."""

    versions: Mapping[tuple[str, str, str], int]  # (model, version, state) -> how many
    transitions: Mapping[tuple[str, str], int]  # (model, state entered) -> how many times


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "autodep_requests",
            "Requests answered, by model and HTTP status code.",
            ["model", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "autodep_request_duration_seconds",
            "Time from request to response.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "autodep_queue_wait_seconds",
            "Time a request waited in the queue for a worker.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "autodep_compute_seconds",
            "Time of one model call (a whole batch) in a worker.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode = Histogram(
            "autodep_decode_seconds",
            "Time a worker spent decoding one batch's payloads before the model call.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "autodep_batch_size",
            "Requests per model call.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.startup = Histogram(
            "autodep_worker_startup_seconds",
            "Time from launch to a warm, ready worker.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.variant = Gauge(
            "autodep_model_variant",
            "1 for the variant each model's workers run (autodep.optimize; as-given: the file).",
            ["model", "variant"],
            registry=r,
        )

    def watch(self, pools: Callable[[], Mapping[str, PoolStats]]) -> None:
        """Report the pools' state at every scrape."""
        self.registry.register(_PoolCollector(pools))

    def watch_versions(self, versions: Callable[[], VersionStats]) -> None:
        """Report the model versions by state at every scrape."""
        self.registry.register(_VersionCollector(versions))

    def observe_request(self, model: str, code: int, seconds: float) -> None:
        """A model request answered (over HTTP or gRPC), with its HTTP status code."""
        self.requests.labels(model, str(code)).inc()
        self.request_seconds.labels(model).observe(seconds)

    def observe_dispatch(self, model: str, waits: list[float]) -> None:
        """A batch leaves the queue: its size, and how long each request waited."""
        self.batch_size.labels(model).observe(len(waits))
        wait = self.queue_wait.labels(model)
        for seconds in waits:
            wait.observe(seconds)

    def forget(self, model: str) -> None:
        """Drop every series of a model that is gone (the repository forgot its versions)."""
        for metric in (
            self.requests,
            self.request_seconds,
            self.queue_wait,
            self.compute,
            self.decode,
            self.batch_size,
            self.startup,
            self.variant,
        ):
            metric.remove_by_labels({"model": model})

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self, pools: Callable[[], Mapping[str, PoolStats]]) -> None:
        self._pools = pools

    def collect(self) -> Iterator[Metric]:
        workers = GaugeMetricFamily(
            "autodep_workers", "Worker processes by state.", labels=["model", "state"]
        )
        depth = GaugeMetricFamily(
            "autodep_queue_depth", "Requests waiting for a worker.", labels=["model"]
        )
        restarts = CounterMetricFamily(
            "autodep_worker_restarts", "Workers that died and were replaced.", labels=["model"]
        )
        desired = GaugeMetricFamily(
            "autodep_desired_workers", "Workers the autoscaler wants.", labels=["model"]
        )
        events = CounterMetricFamily(
            "autodep_scaling_events",
            "Changes of the desired worker count.",
            labels=["model", "direction"],
        )
        for name, stats in self._pools().items():
            for state, count in stats.workers.items():
                workers.add_metric([name, state], count)
            depth.add_metric([name], stats.queue_depth)
            restarts.add_metric([name], stats.restarts)
            desired.add_metric([name], stats.desired)
            events.add_metric([name, "up"], stats.scale_ups)
            events.add_metric([name, "down"], stats.scale_downs)
        yield from (workers, depth, restarts, desired, events)


class _VersionCollector(Collector):
    def __init__(self, versions: Callable[[], VersionStats]) -> None:
        self._versions = versions

    def collect(self) -> Iterator[Metric]:
        stats = self._versions()
        versions = GaugeMetricFamily(
            "autodep_model_versions",
            "Model versions by state (loading, ready, draining, unloaded, failed).",
            labels=["model", "version", "state"],
        )
        for labels, count in sorted(stats.versions.items()):
            versions.add_metric(list(labels), count)
        transitions = CounterMetricFamily(
            "autodep_model_version_transitions",
            "Model version state changes, by the state entered.",
            labels=["model", "state"],
        )
        for (model, state), count in sorted(stats.transitions.items()):
            transitions.add_metric([model, state], count)
        yield from (versions, transitions)
