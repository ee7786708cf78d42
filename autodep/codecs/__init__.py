"""Server-side translation between request payloads and model tensors, by model kind.

A model's `Codec` pairs a decoder (by input kind: payload -> input tensors) and
an encoder (by output kind: output tensors -> JSON-able result). Decoders run
in a thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from autodep.codecs.base import Codec, Decoded, Decoder, Encoder, Options, Payload
from autodep.codecs.classification import ClassificationEncoder
from autodep.codecs.image import ImageDecoder
from autodep.config import ModelConfig

__all__ = ["Codec", "Decoded", "Options", "Payload", "codec_for"]

DECODERS: dict[str, Callable[[ModelConfig], Decoder]] = {"image": ImageDecoder}
ENCODERS: dict[str, Callable[[ModelConfig], Encoder]] = {"classification": ClassificationEncoder}


def codec_for(model: ModelConfig) -> Codec:
    return Codec(DECODERS[model.input](model), ENCODERS[model.output](model))
