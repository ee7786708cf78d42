"""Class probabilities -> the top-n predictions with their labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from autodep.codecs.base import Meta, Options
from autodep.config import ModelConfig


class ClassificationEncoder:
    runs_inline = True

    def __init__(self, model: ModelConfig) -> None:
        self.labels = model.label_names()

    def encode(self, outputs: list[np.ndarray], meta: Meta, options: Options) -> dict[str, Any]:
        probs = outputs[0].reshape(-1)  # softmax already applied in the worker
        n = min(options.top_n, probs.size)
        best = np.argpartition(-probs, n - 1)[:n]
        best = best[np.argsort(-probs[best], kind="stable")]
        return {"predictions": [self._prediction(int(i), float(probs[i])) for i in best]}

    def _prediction(self, index: int, score: float) -> dict[str, Any]:
        label = self.labels[index] if index < len(self.labels) else str(index)
        return {"index": index, "label": label, "score": score}
