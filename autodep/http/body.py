"""Reading a request body inside a model request: bounded in size and in time.

The limits are enforced here, in the handlers, not left to aiohttp's
`client_max_size`: mounted as a sub-application (`app.add_subapp("/ml", ...)`),
the app's own `client_max_size` is ignored and the parent's applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

from autodep.errors import BodyTimeout, PayloadTooLarge

T = TypeVar("T")


def check_length(request: web.Request, limit: int) -> None:
    """413 at once if the announced body is over the limit."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"body of {request.content_length} bytes is over the limit of {limit} bytes; "
            "send at most the --max-body limit"
        )


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole body: 413 past `limit` bytes, 408 if no byte came for `timeout` seconds."""
    check_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await within(request.content.readany(), timeout):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body over the limit of {limit} bytes; send at most the --max-body limit"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def within(read: Awaitable[T], timeout: float) -> T:
    """A read of the body, or 408 if it stalls for `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await read
    except TimeoutError:
        raise BodyTimeout(
            f"the request body stalled for {timeout:g} s (--body-timeout); send it at once"
        ) from None
