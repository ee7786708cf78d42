"""Tensors as they are: a `.npy` body in, the output tensor as JSON out."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from autodep.codecs.base import Decoded, Meta, Options, Payload
from autodep.config import ModelConfig
from autodep.errors import InvalidInput, UnsupportedMediaType

NPY_TYPES = frozenset({"application/x-npy", "application/npy", ""})


class NpyDecoder:
    def __init__(self, model: ModelConfig) -> None:
        self.shape = model.input_shape

    def check(self, payload: Payload) -> None:
        if isinstance(payload.data, str) or payload.content_type not in NPY_TYPES:
            raise UnsupportedMediaType(
                "this model takes a tensor; send a .npy file as application/x-npy"
            )

    def decode(self, payload: Payload) -> Decoded:
        self.check(payload)
        assert isinstance(payload.data, bytes)
        try:
            array = np.load(io.BytesIO(payload.data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InvalidInput(f"not a valid .npy tensor ({exc})") from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise InvalidInput("the tensor must hold numbers (bool, int, uint or float)")
        if self.shape is not None and array.shape != self.shape:
            raise InvalidInput(f"tensor shape {list(array.shape)} != expected {list(self.shape)}")
        return Decoded([array])

    def example(self) -> tuple[tuple[tuple[int, ...], str], ...]:
        return () if self.shape is None else ((self.shape, "float32"),)


class RawEncoder:
    runs_inline = False

    def __init__(self, model: ModelConfig) -> None:
        pass

    def encode(self, outputs: list[np.ndarray], meta: Meta, options: Options) -> dict[str, Any]:
        tensor = outputs[0]
        return {
            "output": {
                "shape": list(tensor.shape),
                "dtype": tensor.dtype.name,
                "data": tensor.reshape(-1).tolist(),
            }
        }
