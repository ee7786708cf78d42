"""An embedded Autodep behind a real aiohttp site on loopback port 0."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from autodep import Autodep
from autodep.testing.server import ServerProcess


class Server:
    """A running Autodep behind a real aiohttp site on 127.0.0.1, port 0."""

    def __init__(self, service: Autodep, url: str, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.url = url
        self.session = session

    async def predict(
        self, body: bytes, path: str = "/predict", content_type: str = "image/jpeg", **kw: Any
    ) -> tuple[int, dict[str, Any], Any]:
        async with self.session.post(
            self.url + path, data=body, headers={"Content-Type": content_type}, **kw
        ) as response:
            return response.status, await response.json(), response.headers

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.url + path) as response:
            return response.status, await response.json()


@contextlib.asynccontextmanager
async def listening(app: web.Application) -> AsyncIterator[str]:
    """`app` served on 127.0.0.1, a free port, for the block: its base URL."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def start_server(service: Autodep) -> tuple[web.AppRunner, str]:
    await service.start()
    runner = web.AppRunner(service.app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def request(
    server: ServerProcess,
    path: str,
    body: bytes | None = None,
    ctype: str = "image/jpeg",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One blocking HTTP request to a server process: (status, JSON answer)."""
    headers = {**({"Content-Type": ctype} if body else {}), **(headers or {})}
    url = server.url() + path
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, body, headers), timeout=30
        ) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def queue_depth(server: Server, model: str) -> int:
    """The model's queue depth, as /status gives it."""
    _, body = await server.get("/status")
    return body["models"][model]["queue_depth"]
