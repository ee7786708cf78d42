"""The data that passes between the HTTP layer, the codecs and the pool."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from autodep.errors import InvalidInput


@dataclass(frozen=True)
class Payload:
    """One request's body, as the client sent it."""

    data: bytes | str
    content_type: str = ""

    @classmethod
    def of(cls, data: bytes | str, content_type: str | None = None) -> Payload:
        """A body as POST /predict and the embedding API both take it: a ``str``, or bytes sent
        as ``text/plain`` (UTF-8) or ``application/json`` (``{"text": ...}``), is text; other
        bytes stay bytes, to be sniffed if sent untyped or as ``application/octet-stream``."""
        if isinstance(data, str):
            return cls(data, "text/plain")
        kind = (content_type or "").split(";")[0].strip().lower()
        if kind == "application/json":
            return cls(_json_text(data), "text/plain")
        if kind == "text/plain":
            return cls(_utf8(data), "text/plain")
        return cls(data, "" if kind == "application/octet-stream" else kind)


@dataclass(frozen=True)
class Options:
    """Per-request output options, checked here for every front end.

    /predict takes them from its query string, V2 from the classification
    extension (`top_n`) and the request's `threshold` parameter.
    """

    top_n: int = 5
    threshold: float = 0.5

    def __post_init__(self) -> None:
        top_n: Any = self.top_n
        threshold: Any = self.threshold
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise InvalidInput(
                f"top_n (V2: the classification parameter) must be a whole number "
                f"of at least 1, not {top_n!r}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise InvalidInput(f"threshold must be a number between 0 and 1, not {threshold!r}")
        if not (math.isfinite(threshold) and 0 <= threshold <= 1):
            raise InvalidInput(f"threshold must be between 0 and 1, not {threshold!r}")
        object.__setattr__(self, "threshold", float(threshold))


Meta = dict[str, Any]  # what a decoder learns that the encoder needs, e.g. the image size


@dataclass
class Decoded:
    tensors: list[np.ndarray]
    meta: Meta = field(default_factory=dict)


class Decoder(Protocol):
    """Payload -> model input tensors; runs in the worker process that runs the model."""

    def check(self, payload: Payload) -> None:
        """Refuse a payload of the wrong kind (415) before it is queued: cheap, no decoding."""

    def decode(self, payload: Payload) -> Decoded: ...

    def example(self) -> tuple[tuple[tuple[int, ...], str], ...]:
        """One request's input (shape, dtype) pairs, for worker warm-up; empty if unknown."""


class Encoder(Protocol):
    runs_inline: bool  # cheap enough (well under a millisecond) for the event loop

    def encode(self, outputs: list[np.ndarray], meta: Meta, options: Options) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Codec:
    decoder: Decoder
    encoder: Encoder


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("text must be UTF-8") from None


def parse_json(data: bytes, what: str) -> Any:
    """``data`` as JSON, or a 400 saying the ``what`` is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: too deep
        raise InvalidInput(f"invalid JSON {what}: {exc}") from None


def _json_text(body: bytes) -> str:
    document = parse_json(body, "body")
    if not isinstance(document, dict) or not isinstance(document.get("text"), str):
        raise InvalidInput('a JSON body must be {"text": "..."}')
    text: str = document["text"]
    return text
