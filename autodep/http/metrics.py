"""GET /metrics, and the middleware that counts and times model requests."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from autodep.http.keys import SERVICE

MODEL_ROUTES = ("/predict", "/v2/models/")


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Requests by model and status code, and their latency (inside the JSON errors)."""
    if request.method != "POST" or not request.path.startswith(MODEL_ROUTES):
        return await handler(request)
    began = time.monotonic()
    response = await handler(request)
    service = request.app[SERVICE]
    name = request.match_info.get("model")
    if name is None and len(service.models) == 1:
        name = next(iter(service.models))
    model = name if name in service.models else "unknown"  # bounded label values
    service.metrics.observe_request(model, response.status, time.monotonic() - began)
    return response
