"""A class-id mask -> per-class pixel counts and a PNG at the input's resolution."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from autodep.codecs.base import Meta, Options
from autodep.config import ModelConfig


class SegmentationEncoder:
    runs_inline = False  # resizing and PNG-encoding a mask takes milliseconds

    def __init__(self, model: ModelConfig) -> None:
        self.labels = model.label_names()

    def encode(self, outputs: list[np.ndarray], meta: Meta, options: Options) -> dict[str, Any]:
        mask = Image.fromarray(outputs[0].astype(np.uint8), mode="L")
        size = tuple(meta.get("size", mask.size))
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.NEAREST)
        counts = np.bincount(np.asarray(mask).reshape(-1), minlength=len(self.labels))
        png = io.BytesIO()
        mask.save(png, "PNG", optimize=False)
        return {
            "classes": {self._label(i): int(n) for i, n in enumerate(counts) if n},
            "mask_png": base64.b64encode(png.getvalue()).decode("ascii"),
        }

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)
