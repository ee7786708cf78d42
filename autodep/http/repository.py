"""The model repository extension, as Triton speaks it (translation only).

POST /v2/repository/index                 -> [{"name", "version", "state", "reason"}]
POST /v2/repository/models/{m}/load       {"parameters": {"config": "<JSON model entry>"}}
POST /v2/repository/models/{m}/unload
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from autodep.codecs.base import parse_json
from autodep.config import ModelConfig, model_from_entry
from autodep.errors import ConfigError, InvalidInput
from autodep.http.keys import SERVICE


async def index(request: web.Request) -> web.Response:
    body = await _body(request)
    ready = body.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidInput(f'"ready" must be true or false, not {ready!r}')
    return web.json_response(request.app[SERVICE].repository.index(ready_only=ready))


async def load(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    name = request.match_info["model"]
    parameters = (await _body(request)).get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')
    if any(key.startswith("file:") for key in parameters):
        raise InvalidInput(
            "file uploads in a load request are not supported; put the model file on the "
            'server and name it in the config\'s "path"'
        )
    config = parameters.get("config")
    entry = None if config is None else _entry(name, config, service.config.repository)
    await service.repository.load(name, entry)
    return web.json_response([v for v in service.repository.index() if v["name"] == name])


async def unload(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    name = request.match_info["model"]
    await _body(request)  # parameters such as unload_dependents have nothing to act on
    await service.repository.unload(name)
    return web.json_response([v for v in service.repository.index() if v["name"] == name])


def _entry(name: str, config: Any, repository: Path | None) -> ModelConfig:
    """The load request's config: a JSON model entry; relative paths from the repository."""
    if not isinstance(config, str):
        raise InvalidInput('"parameters.config" must be a string of JSON (a model entry)')
    try:
        entry = json.loads(config)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f'"parameters.config" is not valid JSON: {exc}') from None
    if isinstance(entry, dict):
        entry.setdefault("name", name)
    base = repository.parent if repository is not None else Path.cwd()
    try:
        return model_from_entry(entry, base, "load request")
    except ConfigError as exc:
        raise InvalidInput(exc.message) from None


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    body = parse_json(raw, "repository request")
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return body


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v2/repository/index", index),
        web.post("/v2/repository/models/{model}/load", load),
        web.post("/v2/repository/models/{model}/unload", unload),
    ]
