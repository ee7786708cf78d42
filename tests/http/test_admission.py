"""The server's side of a request: refused before its body is read, decoded in a worker."""

from __future__ import annotations

import asyncio
import json
import re
import struct

from tests.support.images import image_bytes
from tests.support.servers import queue_depth
from tests.support.waiting import wait_for


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


async def test_a_request_is_admitted_whole_or_not_at_all(serve, gated):
    """A V2 request with more items than the queue has room for is refused (503) before any
    of its items is queued; one with more than --max-items-per-request gets 413."""
    model_path, gate = gated
    server = await serve(
        model_path, max_workers=1, max_batch_size=1, max_queue=4, max_items_per_request=8
    )
    running = asyncio.ensure_future(server.predict(image_bytes("red")))
    await gate.wait_entered(1)  # the only worker is held inside the model
    queued = [asyncio.ensure_future(server.predict(image_bytes("blue"))) for _ in range(3)]

    async def three_waiting() -> bool:
        return await queue_depth(server, "gated") == 3

    await wait_for(three_waiting)
    body, length = binary_v2([image_bytes("green")] * 2)  # 2 items, room for 1
    status, answer = await post_v2(server, body, length)
    assert status == 503, answer
    assert "requests waiting" in answer["error"]
    assert await queue_depth(server, "gated") == 3  # not one of its items was queued
    body, length = binary_v2([image_bytes("green")] * 9)
    status, answer = await post_v2(server, body, length)
    assert status == 413, answer
    assert "--max-items-per-request" in answer["error"]
    gate.open()
    assert [r[0] for r in await asyncio.gather(running, *queued)] == [200] * 4
    body, length = binary_v2([image_bytes("green")] * 4)  # the whole queue: it fits
    status, answer = await post_v2(server, body, length)
    assert status == 200, answer
    assert answer["outputs"][0]["shape"][0] == 4


def binary_v2(elements: list[bytes]) -> tuple[bytes, int]:
    """A binary V2 request of one BYTES input holding `elements`."""
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [len(elements)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return header + raw, len(header)


async def post_v2(server, body: bytes, header_length: int) -> tuple[int, dict]:
    headers = {"Inference-Header-Content-Length": str(header_length)}
    url = server.url + "/v2/models/gated/infer"
    async with server.session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()
