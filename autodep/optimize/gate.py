"""The accuracy gate: a candidate's answers against the model as given, on the same samples.

Each output kind is compared the way its answers are read:

- classification: top-1 agreement (share of samples with the same best class), and the
  largest difference of any class probability;
- segmentation: mask agreement (share of pixels with the same class);
- detection: share of the reference's boxes (score >= 0.3) that the candidate finds again
  with the same label at IoU >= 0.9; the largest score difference of matched boxes;
- raw: share of output elements within rtol/atol of the reference; the largest difference.

A candidate passes when its agreement is at least the model's tolerance (default 0.99).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Answers = Sequence[Sequence[np.ndarray]]  # per sample, the runner's output tensors

DETECTION_SCORE = 0.3
DETECTION_IOU = 0.9
RTOL, ATOL = 1e-2, 1e-3


@dataclass(frozen=True)
class Verdict:
    agreement: float
    max_diff: float | None
    passed: bool

    def reason(self, tolerance: float) -> str | None:
        if self.passed:
            return None
        return f"changes the answers: agreement {self.agreement:.4f} < {tolerance}"


def judge(output: str, reference: Answers, candidate: Answers, tolerance: float) -> Verdict:
    if len(reference) != len(candidate):
        raise ValueError(f"{len(candidate)} answers for {len(reference)} samples")
    agreement, max_diff = _COMPARE[output](reference, candidate)
    return Verdict(agreement, max_diff, agreement >= tolerance)


def _classification(reference: Answers, candidate: Answers) -> tuple[float, float | None]:
    pairs = list(zip(reference, candidate, strict=True))
    same = [int(r[0].argmax()) == int(c[0].argmax()) for r, c in pairs]
    diff = max(float(np.abs(r[0] - c[0]).max()) for r, c in pairs)
    return float(np.mean(same)), diff


def _segmentation(reference: Answers, candidate: Answers) -> tuple[float, float | None]:
    pixels = sum(r[0].size for r in reference)
    same = sum(int((r[0] == c[0]).sum()) for r, c in zip(reference, candidate, strict=True))
    return same / pixels, None


def _detection(reference: Answers, candidate: Answers) -> tuple[float, float | None]:
    found, wanted, diffs = 0, 0, [0.0]
    for (boxes, labels, scores), (c_boxes, c_labels, c_scores) in zip(
        reference, candidate, strict=True
    ):
        keep = scores >= DETECTION_SCORE
        ious = _box_iou(boxes[keep], c_boxes) if len(c_boxes) else np.zeros((keep.sum(), 0))
        same = labels[keep][:, None] == c_labels[None, :]
        good = (ious >= DETECTION_IOU) & same
        wanted += int(keep.sum())
        found += int(good.any(axis=1).sum())
        for row, score in zip(good, scores[keep], strict=True):
            if row.any():
                diffs.append(float(np.abs(c_scores[row] - score).min()))
    return (found / wanted if wanted else 1.0), max(diffs)


def _raw(reference: Answers, candidate: Answers) -> tuple[float, float | None]:
    close, total, diff = 0, 0, 0.0
    for r, c in zip(reference, candidate, strict=True):
        for a, b in zip(r, c, strict=True):
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            close += int(np.isclose(b64, a64, rtol=RTOL, atol=ATOL).sum())
            total += a.size
            diff = max(diff, float(np.abs(a64 - b64).max(initial=0.0)))
    return (close / total if total else 1.0), diff


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return np.asarray(inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9))


_COMPARE: dict[str, Callable[[Answers, Answers], tuple[float, float | None]]] = {
    "classification": _classification,
    "segmentation": _segmentation,
    "detection": _detection,
    "raw": _raw,
}
