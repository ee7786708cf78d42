"""The aiohttp Application: routes and middleware, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from autodep.http import health, page, predict, v2
from autodep.http.errors import json_errors
from autodep.http.keys import SERVICE
from autodep.http.metrics import count_requests, metrics

if TYPE_CHECKING:
    from autodep.service import Service


def build_app(service: Service) -> web.Application:
    app = web.Application(
        client_max_size=service.config.max_body,
        # The counter sits outside the error middleware, so it sees every final status.
        middlewares=[count_requests, json_errors],
    )
    app[SERVICE] = service
    app.add_routes(
        [
            web.get("/", page.page),
            web.post("/predict", predict.predict),
            web.post("/predict/{model}", predict.predict),
            web.get("/status", health.status),
            web.get("/v2/health/live", health.live),
            web.get("/v2/health/ready", health.ready),
            web.get("/metrics", metrics),
            *v2.routes(),
        ]
    )
    return app
