"""The runner the server listens with: aiohttp's, with JSON for what aiohttp answers itself.

aiohttp answers a request it cannot parse (a request line or header over 8,190
bytes, a malformed request line or chunked body) from its protocol handler,
before the application and its middlewares see it, and in plain text. Its public
API has no hook for that answer (aio-libs/aiohttp#3287), but the answer is built
by `web.RequestHandler.handle_error`, which a subclass can override: the runner's
server makes connections of that subclass.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import web

from autodep.http.errors import error_response


class JsonErrorHandler(web.RequestHandler):
    """A connection that answers aiohttp's own errors as `{"error": ...}`."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if too late
        if status >= 500 or not message:  # not the client's doing: no details
            message = HTTPStatus(status).phrase
        response = error_response(status, f"bad request: {message}" if status == 400 else message)
        response.force_close()  # the connection's state is unknown after a parse error
        return response


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(self, loop=asyncio.get_running_loop(), **self._kwargs)


class JsonErrorsRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer every error in JSON."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **self._kwargs,
        )
