"""Bodies being read are bounded: in count (they hold queue places), in time (408), in size
wherever the app is mounted, and nested multipart parts are not read past the limit.

Before: 12 connections each holding 15 of 16 MiB grew the server with the queue empty
(admission counted only queued requests); a stalled body held its connection and buffer
until the client gave up; 96 MiB of nested multipart parts were read against a 4 MiB
limit; mounted under /ml, a 20 MiB body was read with a 16 MiB limit (aiohttp ignores a
sub-application's client_max_size).
"""

from __future__ import annotations

import asyncio
import io
import re

import aiohttp
from aiohttp import web

from autodep import Autodep
from tests.support.images import image_bytes
from tests.support.servers import listening
from tests.support.waiting import wait_for

HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
    b"Content-Length: 1000000\r\n\r\n0123456789"
)


async def open_upload(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that announces a megabyte of body, sends ten bytes and stalls."""
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(HEAD)
    await writer.drain()
    return reader, writer


async def test_bodies_being_read_hold_places_in_the_queue(serve, color_model):
    server = await serve(color_model, max_workers=1, max_queue=2)
    pool = server.service.model("colors").pool
    uploads = [await open_upload(server.url) for _ in range(2)]

    async def both_admitted() -> bool:
        return pool.reserved == 2

    await wait_for(both_admitted)
    assert pool.queue_depth == 0  # nothing is queued: the bodies are still arriving
    status, answer, headers = await server.predict(image_bytes("red"))
    assert status == 503 and "Retry-After" in headers, answer
    for _, writer in uploads:
        writer.close()

    async def released() -> bool:
        return pool.reserved == 0

    await wait_for(released)  # the abandoned uploads gave their places back
    status, answer, _ = await server.predict(image_bytes("red"))
    assert status == 200, answer


async def test_a_stalled_body_gets_408(serve, color_model):
    server = await serve(color_model, max_workers=1, body_timeout=0.5)
    reader, writer = await open_upload(server.url)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    rest = await asyncio.wait_for(reader.read(4096), timeout=30)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"application/json" in head and b'"error"' in rest and b"--body-timeout" in rest


async def chunked(*pieces: bytes):
    """A body sent chunked: no Content-Length for the server to refuse up front."""
    for piece in pieces:
        yield piece


async def test_a_nested_multipart_is_not_read(serve, color_model):
    server = await serve(color_model, max_workers=1, max_body=1 << 20)
    inner = b"--in\r\nContent-Type: image/jpeg\r\n\r\n" + b"x" * (3 << 20) + b"\r\n--in--\r\n"
    body = (
        b"--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n"
        + inner
        + b"\r\n--out\r\nContent-Disposition: form-data; name=image; filename=a.jpg\r\n"
        b"Content-Type: image/jpeg\r\n\r\n" + image_bytes("red") + b"\r\n--out--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=out"}
    async with server.session.post(
        server.url + "/predict", data=chunked(body), headers=headers
    ) as response:
        answer = await response.json()
    assert response.status == 400 and "nested multipart" in answer["error"], answer


async def test_the_body_limit_holds_under_a_mounted_sub_application(color_model):
    async with Autodep(color_model, max_workers=1, max_body=1 << 20) as ad:
        parent = web.Application(client_max_size=64 << 20)
        parent.add_subapp("/ml", ad.app)
        async with listening(parent) as base:
            url = base + "/ml/v2/models/colors/infer"
            async with aiohttp.ClientSession() as session:
                for data in (io.BytesIO(b"x" * (2 << 20)), chunked(b"x" * (2 << 20))):
                    async with session.post(url, data=data) as response:
                        answer = await response.json()
                    assert response.status == 413 and "limit" in answer["error"], answer
