"""The Open Inference Protocol's HTTP routes (/v2/...): translation only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from autodep.errors import InvalidInput
from autodep.http.errors import error_response
from autodep.http.keys import SERVICE
from autodep.protocol import v2

if TYPE_CHECKING:
    from autodep.service import ServedModel

HEADER_LENGTH = "Inference-Header-Content-Length"


async def server_metadata(request: web.Request) -> web.Response:
    return web.json_response(v2.server_metadata())


def _served(request: web.Request) -> ServedModel:
    """The route's model: a version by number on the /versions/{v}/ routes, else the newest."""
    number = v2.version_number(request.match_info.get("version"))
    return request.app[SERVICE].model(request.match_info["model"], version=number)


async def model_metadata(request: web.Request) -> web.Response:
    served = _served(request)
    return web.json_response(v2.model_metadata(served))


async def model_ready(request: web.Request) -> web.Response:
    served = _served(request)
    if served.pool.ready:
        return web.json_response({"name": served.config.name, "ready": True})
    return error_response(503, f"model {served.config.name!r} is not ready")


async def infer(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    served = _served(request)
    service.admit(served)  # 503 before reading the body
    body = await request.read()
    header_length = request.headers.get(HEADER_LENGTH)
    try:
        length = None if header_length is None else int(header_length)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH} must be an integer") from None
    parsed = v2.parse_request(body, length, max_items=served.pool.settings.max_items)
    response = await v2.infer(service, served, parsed)
    payload, json_length = v2.serialize_response(response)
    if json_length is None:
        return web.Response(body=payload, content_type="application/json")
    return web.Response(
        body=payload,
        content_type="application/octet-stream",
        headers={HEADER_LENGTH: str(json_length)},
    )


def routes() -> list[web.RouteDef]:
    table = [web.get("/v2", server_metadata)]
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        table += [
            web.get(prefix, model_metadata),
            web.get(prefix + "/ready", model_ready),
            web.post(prefix + "/infer", infer),
        ]
    return table
