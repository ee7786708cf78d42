"""GET /: the live status page, one HTML file with its CSS and JS inlined.

The page polls /status and /metrics from the browser. When the server has a
bearer token (`auth_token`), `/` stays public so that a browser can open it,
but its HTML names no model: the script takes the token from the URL fragment
(`/#token=...`, never sent to the server) or a form, and sends it as
`Authorization: Bearer` on its fetches of the protected routes. Without a
token the HTML names every served model before the first poll.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib import resources

from aiohttp import web

from autodep.http.keys import SERVICE


@cache
def _template() -> str:
    static = resources.files("autodep.http").joinpath("static")
    html = static.joinpath("status.html").read_text()
    html = html.replace("/*@style@*/", static.joinpath("status.css").read_text())
    return html.replace("/*@script@*/", static.joinpath("status.js").read_text())


async def page(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    protected = service.config.auth_token is not None
    names = [] if protected else list(service.models)
    sections = "\n".join(
        f'<section class="model" data-model="{escape(n)}"><header><h2>{escape(n)}</h2></header>'
        "</section>"
        for n in names
    )
    html = _template().replace("@auth@", "required" if protected else "none", 1)
    html = html.replace("@models@", sections, 1)
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})
