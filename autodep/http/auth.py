"""Optional bearer token: with `--auth-token`, every route but the health probes needs it.

    Authorization: Bearer TOKEN    compared in constant time (hmac.compare_digest)
    missing or wrong               401 {"error": ...} with WWW-Authenticate: Bearer

The health routes (`/v2/health/live`, `/v2/health/ready`) stay open so that
load balancers and orchestrators can probe without the secret, and so does the
status page's HTML shell (`GET /`), which shows nothing until its script is
given the token (autodep.http.page). They are told apart by their handler, not
by the path, so the rule holds when the app is mounted under a prefix as a
sub-application.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from autodep.bearer import given_token, matches
from autodep.http import health, page
from autodep.http.errors import error_response

PUBLIC = frozenset({health.live, health.ready, page.page})
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_token(token: str) -> Middleware:
    """A middleware that answers 401 unless the request carries `token`."""
    expected = token.encode()

    @web.middleware
    async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.handler in PUBLIC:
            return await handler(request)
        given = given_token(request.headers.get("Authorization"))
        if given is None:
            return error_response(
                401,
                "this server needs a bearer token: send 'Authorization: Bearer <token>' "
                "(the token the server was started with, --auth-token)",
                CHALLENGE,
            )
        if not matches(given, expected):
            return error_response(401, "wrong bearer token", CHALLENGE)
        return await handler(request)

    return bearer_token
