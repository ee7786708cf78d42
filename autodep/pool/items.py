"""What one request puts in the queue, how it travels to the worker, and what comes back.

An `Item` is either a payload as the client sent it (an image file, a text, a
.npy file), which the worker decodes, or ready input tensors (V2 numeric
inputs). Decoding in the worker keeps the server process to HTTP and
bookkeeping: under load its core is not spent on images that a full queue then
refuses, and a lone request makes one hop fewer.

Payload bytes travel through the shared input buffer like tensors; the socket
carries one small map per request:

    {"tensors": [spec, ...]}                         ready tensors
    {"payload": spec, "type": str, "text": bool}     bytes (UTF-8 when text)

and the worker answers each request with its output specs and the decoder's
meta (e.g. the image's size), or with an error `[status, message]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autodep.codecs.base import Meta, Payload
from autodep.pool.shm import SharedBuffer, TensorSpec

Item = Payload | Sequence[np.ndarray]
Wire = dict[str, Any]


@dataclass(frozen=True)
class Inferred:
    """One request's answer from the model: its output tensors and the decoder's meta."""

    outputs: list[np.ndarray]
    meta: Meta


def arrays(item: Item) -> list[np.ndarray]:
    """The arrays that carry an item through shared memory."""
    if not isinstance(item, Payload):
        return list(item)
    data = item.data.encode("utf-8") if isinstance(item.data, str) else item.data
    return [np.frombuffer(data, np.uint8)]


def to_wire(item: Item, specs: Sequence[TensorSpec]) -> Wire:
    """The header of an item whose arrays were written at `specs`."""
    if not isinstance(item, Payload):
        return {"tensors": [s.to_wire() for s in specs]}
    (spec,) = specs
    return {
        "payload": spec.to_wire(),
        "type": item.content_type,
        "text": isinstance(item.data, str),
    }


def from_wire(wire: Wire, buffer: SharedBuffer) -> Item:
    """The worker's side of `to_wire`: tensors as zero-copy views, payloads as bytes."""
    if "tensors" in wire:
        return [buffer.view(TensorSpec.from_wire(s)) for s in wire["tensors"]]
    data = buffer.view(TensorSpec.from_wire(wire["payload"])).tobytes()
    return Payload(data.decode("utf-8") if wire["text"] else data, wire["type"])
