"""Faster R-CNN (MobileNetV3-Large 320 FPN) shape detector, trained here.

Usage::

    python -m examples.detection --out DIR [--force]

Writes ``DIR/fasterrcnn.pt`` and ``DIR/fasterrcnn.labels.txt`` (line index = label id, 0 is
``background``).  The TorchScript module is the scripted torchvision model: it takes a
``List[Tensor]`` of ``[3, H, W]`` float images in 0..1 (any size, no normalization; it resizes
and normalizes internally) and returns ``(losses, detections)`` where ``detections`` is a list
of ``{"boxes", "labels", "scores"}`` dicts in input pixel coordinates.

Box losses alone teach a from-scratch backbone very slowly, so the backbone starts from the
one the ``deeplabv3`` example learned on segmentation masks (the same MobileNetV3-Large
layers); that model is built first if ``DIR`` does not have it yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from examples import segmentation
from examples.shapes import SHAPES, detection_sample
from examples.training import cli, fit, image_entry, load, train_and_export

NAME = "fasterrcnn"
TRAIN_SIZE = 320
EVAL_SEED = 20240603
CURRICULUM = 0.4  # fraction of training over which the data ramps up to full difficulty


@dataclass(frozen=True)
class Recipe:
    min_size: int  # the model's internal resize of the shorter image side
    batch: int
    steps: int
    lr: float
    seed: int = 0


RECIPE = Recipe(min_size=224, batch=4, steps=200, lr=1e-3)


def make_model(min_size: int) -> torch.nn.Module:
    """The torchvision model, with fewer sampled proposals than the defaults.

    The RoI head's two 1024-wide layers dominate CPU time per sampled proposal; with at most
    four objects per image, 64 samples and 300 proposals are plenty.
    """
    return fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=len(SHAPES) + 1,
        min_size=min_size,
        max_size=2 * min_size,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        box_batch_size_per_image=64,
    )


def load_backbone(model: torch.nn.Module, segmenter_path: Path) -> None:
    """Copy the MobileNetV3 layers of the exported ``deeplabv3`` model into ``model``."""
    prefix = "backbone."  # the exported model is the plain torchvision segmenter
    state = load(segmenter_path).state_dict()
    layers = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    model.backbone.body.load_state_dict(layers)


def to_inputs(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` to the model's ``[3, H, W]`` float input in 0..1."""
    return torch.tensor(image).permute(2, 0, 1).float().div(255)


def train(recipe: Recipe, segmenter_path: Path) -> torch.nn.Module:
    model = make_model(recipe.min_size)
    load_backbone(model, segmenter_path)

    def loss_of_step(rng: np.random.Generator, progress: float) -> torch.Tensor:
        difficulty = min(1.0, progress / CURRICULUM)
        images, targets = [], []
        for _ in range(recipe.batch):
            image, boxes, labels = detection_sample(rng, TRAIN_SIZE, difficulty)
            images.append(to_inputs(np.asarray(image)))
            targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
        return sum(model(images, targets).values())

    fit(model, loss_of_step, recipe, name=NAME, weight_decay=1e-4)
    return model


def build(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Train and export the model into ``out`` (skipped if present) and return its config.

    ``quick`` builds the same model: a smaller recipe falls short of the tests' bars (150 steps
    at 160 pixels put the top box on a shape in 36% of images).
    """

    def trained() -> torch.nn.Module:
        segmentation.build(out, quick=quick)
        print(f"[{NAME}] training {RECIPE}", flush=True)
        return train(RECIPE, out / f"{segmentation.NAME}.pt")

    entry = image_entry(NAME, "detection", resize=None, normalize=False)
    return train_and_export(out, entry, trained, evaluate, force)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` x1, y1, x2, y2 boxes."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def evaluate(
    model_path: Path, n: int = 50, seed: int = EVAL_SEED, size: int = TRAIN_SIZE
) -> dict[str, float]:
    """Detection quality of the exported model on ``n`` fresh ``size x size`` images.

    ``top_hit``: fraction of images whose highest-scoring box has IoU > 0.5 with a true box of
    the same label; ``recall``: fraction of true boxes matched (IoU > 0.5, same label) by a
    detection scoring >= 0.5; ``best_iou``: mean over true boxes of the best IoU of any
    detection with the same label.
    """
    model = load(model_path)
    rng = np.random.default_rng(seed)
    top_hits, matched, best_ious = [], [], []
    for _ in range(n):
        image, boxes, labels = detection_sample(rng, size)
        with torch.inference_mode():
            _, detections = model([to_inputs(np.asarray(image))])
        found = {key: value.numpy() for key, value in detections[0].items()}
        ious = box_iou(boxes, found["boxes"])
        same = labels[:, None] == found["labels"][None, :]
        good = (ious > 0.5) & same
        top_hits.append(bool(len(found["scores"]) and good[:, 0].any()))
        matched.extend((good & (found["scores"][None, :] >= 0.5)).any(axis=1))
        best_ious.extend(np.where(same, ious, 0.0).max(axis=1, initial=0.0))
    return {
        "top_hit": float(np.mean(top_hits)),
        "recall": float(np.mean(matched)),
        "best_iou": float(np.mean(best_ious)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    cli(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
