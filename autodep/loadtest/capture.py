"""The server's side of a run: /metrics scraped every second, one `ServerSample`
per model per scrape.

Read from autodep's Prometheus metrics (autodep/metrics.py):
    autodep_workers{model,state}     gauge: starting, idle, busy, stopping
    autodep_desired_workers{model}   gauge: the autoscaler's target (absent on older servers)
    autodep_queue_depth{model}       gauge
    autodep_batch_size{model}        histogram: mean batch size between two scrapes
                                     = Δ_sum / Δ_count
A metric the server lacks reads as 0 (None for desired workers); a failed scrape
is counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from autodep.loadtest.records import ServerSample

log = logging.getLogger(__name__)

STATES = ("starting", "idle", "busy", "stopping")
WATCHED = (
    "autodep_workers",
    "autodep_desired_workers",
    "autodep_queue_depth",
    "autodep_batch_size",
)


@dataclass
class Scrape:
    """One model's numbers in one /metrics answer."""

    workers: dict[str, int] = field(default_factory=dict)  # by state
    desired: float | None = None
    queue_depth: int = 0
    batch_count: float = 0.0
    batch_sum: float = 0.0


def parse_metrics(text: str) -> dict[str, Scrape]:
    """The numbers we watch, by model, from Prometheus text format."""
    scrapes: defaultdict[str, Scrape] = defaultdict(Scrape)
    for family in text_string_to_metric_families(text):
        if family.name not in WATCHED:
            continue
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            scrape = scrapes[model]
            if family.name == "autodep_workers":
                scrape.workers[sample.labels.get("state", "")] = int(sample.value)
            elif family.name == "autodep_desired_workers":
                scrape.desired = sample.value
            elif family.name == "autodep_queue_depth":
                scrape.queue_depth = int(sample.value)
            elif sample.name == "autodep_batch_size_count":
                scrape.batch_count = sample.value
            elif sample.name == "autodep_batch_size_sum":
                scrape.batch_sum = sample.value
    return dict(scrapes)


def to_sample(t: float, model: str, scrape: Scrape, previous: ServerSample | None) -> ServerSample:
    batches = scrape.batch_count - (previous.batch_count if previous else 0.0)
    images = scrape.batch_sum - (previous.batch_sum if previous else 0.0)
    if batches < 0:  # the server restarted: its counters began again from 0
        batches, images = scrape.batch_count, scrape.batch_sum
    return ServerSample(
        t=t,
        model=model,
        **{state: scrape.workers.get(state, 0) for state in STATES},
        desired=scrape.desired,
        queue_depth=scrape.queue_depth,
        batch_count=scrape.batch_count,
        batch_sum=scrape.batch_sum,
        batch_mean=images / batches if batches > 0 and previous is not None else None,
    )


class Scraper:
    """Scrapes `url/metrics` every `interval` seconds until `stop()`, then once more."""

    def __init__(self, url: str, start: float, interval: float = 1.0) -> None:
        self.url = url.rstrip("/") + "/metrics"
        self.samples: list[ServerSample] = []
        self.failures = 0
        self._start = start  # time.monotonic() of the run's t = 0
        self._interval = interval
        self._latest: dict[str, ServerSample] = {}
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(2.0, self._interval))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tick = time.monotonic()
            while not self._stopped.is_set():
                await self._scrape(session)
                tick += self._interval
                if tick < time.monotonic():  # a slow scrape: skip the missed ticks
                    tick = time.monotonic()
                with contextlib.suppress(TimeoutError):  # the tick came before stop()
                    await asyncio.wait_for(self._stopped.wait(), tick - time.monotonic())
            await self._scrape(session)

    async def _scrape(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(self.url) as response:
                response.raise_for_status()
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            self.failures += 1
            if self.failures == 1:
                log.warning("scraping %s failed (%s); the run goes on", self.url, error)
            return
        t = time.monotonic() - self._start
        for model, scrape in sorted(parse_metrics(text).items()):
            sample = to_sample(t, model, scrape, self._latest.get(model))
            self._latest[model] = sample
            self.samples.append(sample)
