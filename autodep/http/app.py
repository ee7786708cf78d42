"""The aiohttp Application: routes and middleware, nothing else."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from autodep.http import health, page, predict, repository, v2
from autodep.http.auth import require_token
from autodep.http.errors import json_errors
from autodep.http.keys import SERVICE
from autodep.http.metrics import metrics
from autodep.service import Service


def build_app(service: Service) -> web.Application:
    # Model requests are counted, timed and held in flight by Service.request, which
    # every model route calls: no middleware needs to know which route is which.
    middlewares: list[Middleware] = [json_errors]
    token = service.config.auth_token
    if token is not None:
        middlewares.append(require_token(token.get_secret_value()))
    app = web.Application(client_max_size=service.config.max_body, middlewares=middlewares)
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
            *repository.routes(),
        ]
    )
    return app
