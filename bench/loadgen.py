"""A lean closed-loop HTTP/1.1 load generator, so the client does not eat the server's cores.

On a 2-core machine the load generator shares the cores with the server it
measures. aiohttp's client costs about as much CPU per request as the server
side does, which would cap the measured throughput of a fast model at the
client's speed. This one sends a request prepared once (keep-alive, fixed
body) and reads the answer's status and Content-Length only, like wrk does.

    result = await closed_loop("127.0.0.1", 8000, "/predict", body, "image/jpeg",
                               concurrency=32, seconds=10)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, of answers with status 200
    statuses: dict[int, int] = field(default_factory=dict)
    refusals: list[float] = field(default_factory=list)  # seconds, of answers with status 503
    retry_after: int = 0  # 503 answers that said when to come back
    elapsed: float = 0.0

    @property
    def ok_per_s(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies), q)) if self.latencies else 0.0


def request_bytes(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status, and whether it has a Retry-After header."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, retry_after = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        retry_after = retry_after or name == b"retry-after"
    await reader.readexactly(length)
    return status, retry_after


async def closed_loop(
    host: str,
    port: int,
    path: str,
    body: bytes,
    content_type: str,
    *,
    concurrency: int,
    seconds: float = 0.0,
    requests: int = 0,
) -> LoadResult:
    """`concurrency` connections, each sending its next request when the last is answered.

    Runs for `seconds`, or until `requests` answers in all; every status is counted.
    """
    message = request_bytes(host, port, path, body, content_type)
    result = LoadResult()
    deadline = time.perf_counter() + seconds if seconds else float("inf")
    remaining = [requests] if requests else [-1]

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline and remaining[0] != 0:
                if remaining[0] > 0:
                    remaining[0] -= 1
                began = time.perf_counter()
                writer.write(message)
                status, retry_after = await _answer(reader)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == 200:
                    result.latencies.append(time.perf_counter() - began)
                elif status == 503:
                    result.refusals.append(time.perf_counter() - began)
                    result.retry_after += retry_after
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - began
    return result


async def post_loop(
    url: str, body: bytes, concurrency: int, *, path: str = "/predict", **amount: float
) -> LoadResult:
    """`closed_loop` against a server's base URL, posting a JPEG body to `path`."""
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    return await closed_loop(
        host, port, path, body, "image/jpeg", concurrency=concurrency, **amount
    )
