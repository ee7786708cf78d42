"""The data that passes between the HTTP layer, the codecs and the pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Payload:
    """One request's body, as the client sent it."""

    data: bytes | str
    content_type: str = ""


@dataclass(frozen=True)
class Options:
    """Per-request output options (the query string of /predict)."""

    top_n: int = 5
    threshold: float = 0.5


@dataclass
class Decoded:
    tensors: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. the original image size


class Decoder(Protocol):
    def decode(self, payload: Payload) -> Decoded: ...

    def example(self) -> tuple[tuple[tuple[int, ...], str], ...]:
        """One request's input (shape, dtype) pairs, for worker warm-up; empty if unknown."""


class Encoder(Protocol):
    runs_inline: bool  # cheap enough (well under a millisecond) for the event loop

    def encode(
        self, outputs: list[np.ndarray], decoded: Decoded, options: Options
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Codec:
    decoder: Decoder
    encoder: Encoder
