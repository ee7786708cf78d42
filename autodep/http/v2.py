"""The Open Inference Protocol's HTTP routes (/v2/...): translation only."""

from __future__ import annotations

from aiohttp import web

from autodep.errors import InvalidInput
from autodep.http.body import read_body
from autodep.http.errors import error_response
from autodep.http.keys import SERVICE
from autodep.protocol import v2
from autodep.repository.served import ServedModel

HEADER_LENGTH = "Inference-Header-Content-Length"


async def server_metadata(request: web.Request) -> web.Response:
    return web.json_response(v2.server_metadata())


def _route(request: web.Request) -> tuple[str, int | None]:
    """The route's model, and its version on the /versions/{v}/ routes (else None: the newest)."""
    return request.match_info["model"], v2.version_number(request.match_info.get("version"))


def _served(request: web.Request) -> ServedModel:
    name, version = _route(request)
    return request.app[SERVICE].model(name, version)


async def model_metadata(request: web.Request) -> web.Response:
    served = _served(request)
    return web.json_response(v2.model_metadata(served))


async def model_ready(request: web.Request) -> web.Response:
    served = _served(request)
    if served.pool.ready:
        return web.json_response({"name": served.config.name, "ready": True})
    return error_response(503, f"model {served.config.name!r} is not ready")


async def infer(request: web.Request) -> web.Response:
    # 404 and 503 before the body is read: a refusal costs next to nothing.
    async with request.app[SERVICE].request(*_route(request)) as call:
        config = request.app[SERVICE].config
        body = await read_body(request, config.max_body, config.body_timeout)
        header_length = request.headers.get(HEADER_LENGTH)
        try:
            length = None if header_length is None else int(header_length)
        except ValueError:
            raise InvalidInput(f"{HEADER_LENGTH} must be an integer") from None
        parsed = v2.parse_request(body, length, admit=call.admit_items)
        response = await v2.infer(call, parsed)
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
