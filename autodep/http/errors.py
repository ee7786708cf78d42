"""One middleware turns every error into `{"error": ...}` JSON with the right status."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from autodep.errors import AutodepError

log = logging.getLogger(__name__)

_REASONS = {
    404: "no such route; see the API in README.md (POST /predict/{model}, GET /status, /v2/...)",
    405: "method not allowed on this route",
    413: "request body too large",
}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AutodepError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json":
            raise
        message = _REASONS.get(exc.status, exc.reason)
        if exc.status == 413:
            message = f"request body too large: {exc.text}; send at most the --max-body limit"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, message, headers)
    except Exception:
        request_id = uuid.uuid4().hex[:12]
        log.exception(
            "request %s %s failed (request id %s)", request.method, request.path, request_id
        )
        return error_response(500, f"internal error (request id {request_id}); see the server log")
