"""Boxes, labels and scores -> detections in the input image's pixel coordinates."""

from __future__ import annotations

from typing import Any

import numpy as np

from autodep.codecs.base import Meta, Options
from autodep.config import ModelConfig


class DetectionEncoder:
    runs_inline = True

    def __init__(self, model: ModelConfig) -> None:
        self.labels = model.label_names()
        self.input_size = model.preprocess.resize  # (height, width) the model saw, or None

    def encode(self, outputs: list[np.ndarray], meta: Meta, options: Options) -> dict[str, Any]:
        boxes, labels, scores = outputs
        keep = np.flatnonzero(scores >= options.threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        boxes = boxes[keep] * self._scale(meta)
        return {
            "detections": [
                {
                    "box": [round(float(v), 2) for v in box],
                    "label": self._label(int(label)),
                    "score": float(score),
                }
                for box, label, score in zip(boxes, labels[keep], scores[keep], strict=True)
            ]
        }

    def _scale(self, meta: Meta) -> np.ndarray:
        """Factors from the model's input coordinates back to the original image's."""
        if self.input_size is None or "size" not in meta:
            return np.ones(4, np.float32)
        width, height = meta["size"]
        sx, sy = width / self.input_size[1], height / self.input_size[0]
        return np.array([sx, sy, sx, sy], np.float32)

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)
