"""One middleware turns every error into `{"error": ...}` JSON with the right status."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from autodep.errors import AutodepError, internal_error

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
        if exc.status == 500:  # not the client's doing: the details are for the log
            return error_response(500, internal_error(exc, _what(request)))
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
    except Exception as exc:
        return error_response(500, internal_error(exc, _what(request)))


def _what(request: web.Request) -> str:
    return f"request {request.method} {request.path}"
