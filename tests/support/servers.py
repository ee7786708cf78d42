"""An embedded Autodep behind a real aiohttp site on loopback port 0."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from autodep import Autodep


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


async def start_server(service: Autodep) -> tuple[web.AppRunner, str]:
    await service.start()
    runner = web.AppRunner(service.app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
