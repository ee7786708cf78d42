"""Server-side translation between request payloads and model tensors, by model kind.

A model's `Codec` pairs a decoder (by input kind: payload -> input tensors) and
an encoder (by output kind: output tensors -> JSON-able result). Decoders run
in a thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from autodep.codecs.base import Codec, Decoded, Decoder, Encoder, Options, Payload
from autodep.codecs.classification import ClassificationEncoder
from autodep.codecs.detection import DetectionEncoder
from autodep.codecs.image import ImageDecoder
from autodep.codecs.segmentation import SegmentationEncoder
from autodep.codecs.tensor import NpyDecoder, RawEncoder
from autodep.codecs.text import TextDecoder
from autodep.config import ModelConfig

__all__ = ["Codec", "Decoded", "Options", "Payload", "codec_for"]

DECODERS: dict[str, Callable[[ModelConfig], Decoder]] = {
    "image": ImageDecoder,
    "text": TextDecoder,
    "tensor": NpyDecoder,
}
ENCODERS: dict[str, Callable[[ModelConfig], Encoder]] = {
    "classification": ClassificationEncoder,
    "segmentation": SegmentationEncoder,
    "detection": DetectionEncoder,
    "raw": RawEncoder,
}


def codec_for(model: ModelConfig) -> Codec:
    return Codec(DECODERS[model.input](model), ENCODERS[model.output](model))
