"""The server's side of a request: refused before its body is read, decoded in a worker."""

from __future__ import annotations

import asyncio
import re

from tests.support.images import image_bytes
from tests.support.waiting import wait_for


async def queue_depth(server, model: str) -> int:
    _, body = await server.get("/status")
    return body["models"][model]["queue_depth"]


async def test_a_full_queue_answers_503_before_reading_the_body(serve, gated):
    model_path, gate = gated
    server = await serve(model_path, max_workers=1, max_batch_size=1, max_queue=2)
    running = asyncio.ensure_future(server.predict(image_bytes("red")))
    await gate.wait_entered(1)  # the only worker is held inside the model
    queued = [asyncio.ensure_future(server.predict(image_bytes("blue"))) for _ in range(2)]

    async def full() -> bool:
        return await queue_depth(server, "gated") == 2

    await wait_for(full)
    # Announce a megabyte of body, send ten bytes of it, and never send the rest:
    # an answer can only come from a server that decided before reading the body.
    host, port = re.match(r"http://([^:]+):(\d+)", server.url).groups()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 1000000\r\n\r\n0123456789"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    writer.close()
    assert head.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1" in head
    gate.open()
    results = await asyncio.gather(running, *queued)
    assert [status for status, _, _ in results] == [200, 200, 200]


async def test_an_undecodable_body_fails_alone_and_its_batch_goes_on(serve, gated):
    model_path, gate = gated
    server = await serve(model_path, max_workers=1, max_batch_size=8)
    first = asyncio.ensure_future(server.predict(image_bytes("red")))
    await gate.wait_entered(1)
    colors = ["green", "blue", "red"]
    good = [asyncio.ensure_future(server.predict(image_bytes(c))) for c in colors]
    junk = asyncio.ensure_future(server.predict(b"\xff\xd8 not really a JPEG"))

    async def all_queued() -> bool:
        return await queue_depth(server, "gated") == 4

    await wait_for(all_queued)
    gate.open()
    answers = await asyncio.gather(first, *good)
    assert [body["predictions"][0]["label"] for _, body, _ in answers] == ["red", *colors]
    status, body, _ = await junk
    assert status == 400 and "could not decode the image" in body["error"]
    async with server.session.get(server.url + "/metrics") as response:
        metrics = await response.text()
    # The junk went in the same model call as the three good ones: two batches in all.
    assert 'autodep_batch_size_count{model="gated"} 2.0' in metrics
    assert 'autodep_batch_size_sum{model="gated"} 5.0' in metrics
