"""The open-loop executor: every request leaves at its scheduled time, answered or not.

A closed loop (send, wait, send) slows down with the server and so hides its
latency; here the schedule alone decides when requests leave, each in its own
task, over a connection pool large enough never to make one wait for another.
Whether the generator kept up is measured, not assumed: each record carries
its scheduled and its actual send time.

    schedule --(sleep until t)--> task: POST URL/predict/{model} --> RequestRecord
    Scraper: GET URL/metrics every second --------------------------> ServerSample
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
from tqdm import tqdm

from autodep.loadtest.capture import Scraper
from autodep.loadtest.payloads import DEFAULT, Body
from autodep.loadtest.records import NO_RESPONSE, OK, RequestRecord, ServerSample
from autodep.loadtest.schedule import Request

LEAD_S = 0.5  # from the start of the run to t = 0: the scraper's first look at an idle server
ERROR_CHARS = 300  # error text kept per request


@dataclass(frozen=True)
class RunConfig:
    url: str
    timeout: float = 30.0  # seconds per request, then it counts as "no response"
    connections: int = 1000  # client connection pool; more in flight than this would queue
    scrape: bool = True
    scrape_interval: float = 1.0
    linger: float = 2.0  # seconds of scraping after the last answer (scale-down)
    progress: bool = True


@dataclass(frozen=True)
class RunResult:
    records: list[RequestRecord]
    samples: list[ServerSample]
    started: datetime  # wall clock at t = 0
    scrape_failures: int
    t0: float  # time.monotonic() at t = 0, to put other observations on the run's clock
    interrupted: bool = False  # by Ctrl-C: `records` holds the requests answered until then


def run(requests: Sequence[Request], bodies: dict[str, Body], config: RunConfig) -> RunResult:
    """Run the schedule; a first Ctrl-C ends it early with what was answered, a second aborts."""
    return asyncio.run(execute(requests, bodies, config))


async def execute(
    requests: Sequence[Request], bodies: dict[str, Body], config: RunConfig
) -> RunResult:
    connector = aiohttp.TCPConnector(limit=config.connections)
    timeout = aiohttp.ClientTimeout(total=config.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await probe(session, config.url)
        start = time.monotonic() + LEAD_S
        started = datetime.now(UTC).replace(microsecond=0)
        scraper = Scraper(config.url, start, config.scrape_interval) if config.scrape else None
        scraping = asyncio.create_task(scraper.run()) if scraper else None
        bar = tqdm(total=len(requests), unit="req", file=sys.stderr, disable=not config.progress)
        sender = _Sender(session, config, bodies, start, bar)
        tasks: list[asyncio.Task[RequestRecord]] = []
        interrupted = False
        try:
            for index, request in enumerate(requests):
                delay = start + request.t - time.monotonic()
                if delay > 0:  # open loop: each request leaves at its scheduled time
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(sender.send(index, request)))
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:  # Ctrl-C: stop, and keep what was answered
            interrupted = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            bar.close()
        if scraper and scraping:
            if not interrupted:
                await asyncio.sleep(config.linger)  # scrape the tail: a measuring window
            scraper.stop()
            await scraping
    return RunResult(
        records=[t.result() for t in tasks if not t.cancelled()],
        samples=scraper.samples if scraper else [],
        started=started,
        scrape_failures=scraper.failures if scraper else 0,
        t0=start,
        interrupted=interrupted,
    )


async def probe(session: aiohttp.ClientSession, url: str) -> None:
    """Fail early, and clearly, when nothing answers at `url`."""
    try:
        async with session.get(url.rstrip("/") + "/v2/health/ready") as response:
            if response.status != OK:
                print(f"warning: {url} says it is not ready ({response.status})", file=sys.stderr)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise SystemExit(f"no server at {url}: {error}") from None


class _Sender:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: RunConfig,
        bodies: dict[str, Body],
        start: float,
        bar: tqdm[None],
    ) -> None:
        self._session = session
        self._base = config.url.rstrip("/") + "/predict"
        self._timeout = config.timeout
        self._bodies = bodies
        self._start = start
        self._bar = bar
        self._in_flight = 0
        self._failed = 0

    async def send(self, index: int, request: Request) -> RequestRecord:
        url = (
            self._base if request.model is None else f"{self._base}/{quote(request.model, safe='')}"
        )
        body = self._bodies[request.payload or DEFAULT]
        self._in_flight += 1
        sent = time.monotonic()
        status, error = NO_RESPONSE, ""
        try:
            async with self._session.post(
                url, data=body.data, headers={"Content-Type": body.content_type}
            ) as response:
                answer = await response.read()
                status = response.status
                if status != OK:
                    error = _error_text(answer)
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = time.monotonic() - sent
        self._in_flight -= 1
        self._failed += status != OK
        self._bar.set_postfix(in_flight=self._in_flight, failed=self._failed, refresh=False)
        self._bar.update()
        return RequestRecord(
            index=index,
            model=request.model or "",
            payload=request.payload or DEFAULT,
            scheduled_s=request.t,
            sent_s=sent - self._start,
            latency_s=latency,
            status=status,
            error=error[:ERROR_CHARS],
        )


def _error_text(answer: bytes) -> str:
    """The `error` of autodep's JSON error answers, else the start of the body."""
    try:
        message = json.loads(answer)["error"]
    except (ValueError, KeyError, TypeError):
        return answer[:ERROR_CHARS].decode("utf-8", "replace").strip()
    return str(message)
