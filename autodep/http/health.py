"""GET /status and the V2 health routes."""

from __future__ import annotations

from aiohttp import web

from autodep.http.errors import error_response
from autodep.http.keys import SERVICE


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE].status())


async def live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    if request.app[SERVICE].ready:
        return web.json_response({"ready": True})
    return error_response(503, "not ready: a model has no worker and cannot start one now")
