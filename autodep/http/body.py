"""Reading a request body inside a model request, with aiohttp's size error as ours."""

from __future__ import annotations

from aiohttp import web

from autodep.errors import PayloadTooLarge


async def read_body(request: web.Request) -> bytes:
    """The whole body; over the app's `client_max_size` it is our 413 (`PayloadTooLarge`),
    so that `Service.request` counts it as the 413 the client gets."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"request body too large: {exc.text}; send at most the --max-body limit"
        ) from None
