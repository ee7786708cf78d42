"""DeepLabV3 (MobileNetV3-Large backbone) shape segmenter, trained here.

Usage::

    python -m examples.segmentation --out DIR [--force]

Writes ``DIR/deeplabv3.pt`` and ``DIR/deeplabv3.labels.txt`` (``background`` then the shapes).
The exported module is the plain torchvision model: it takes an ImageNet-normalized
``[N, 3, H, W]`` batch and returns ``{"out": [N, 6, H, W]}`` logits.  Its config entry has the
server resize images to 128x128, the resolution it was trained at (to keep CPU training
affordable); the server scales the mask back to the picture's size.  In training, the images
and masks are drawn at 256 and the network's input downsampled (antialiased) to 128.

Trained from scratch on masks alone, DeepLab learns quickly where the shapes are but only
slowly which shape is which (mean IoU 0.36 after 1000 steps).  So the MobileNetV3 layers are
first trained as a shape classifier (not exported), then the whole model on masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

from examples import classifier
from examples.shapes import SHAPES, segmentation_batch
from examples.training import cli, fit, image_entry, load, resized, to_tensor, train_and_export

NAME = "deeplabv3"
SERVE_SIZE = 256
EVAL_SEED = 20240602
CURRICULUM = 0.4  # fraction of training over which the data ramps up to full difficulty
# Background is most of every mask; down-weighting it makes the model commit to shapes.
CLASS_WEIGHTS = (0.25,) + (1.0,) * len(SHAPES)


@dataclass(frozen=True)
class Recipe:
    backbone: classifier.Recipe  # the MobileNetV3 classifier pre-training
    resolution: int  # the network's internal input size
    batch: int
    steps: int
    lr: float
    seed: int = 0


RECIPE = Recipe(
    backbone=classifier.Recipe(
        "mobilenet_v3_large", resolution=64, batch=32, steps=800, lr=3e-3, start_resolution=32
    ),
    resolution=128,
    batch=8,
    steps=500,
    lr=2e-3,
)


class Segmenter(torch.nn.Module):
    """Runs ``net`` at ``resolution`` and returns logits at the input's size (training and
    evaluation only)."""

    def __init__(self, net: torch.nn.Module, resolution: int) -> None:
        super().__init__()
        self.net = net
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        small = F.interpolate(
            x, size=[self.resolution, self.resolution], mode="bilinear", antialias=True
        )
        logits = self.net(small)["out"]
        size = [x.shape[2], x.shape[3]]
        return {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}


def train(recipe: Recipe) -> torch.nn.Module:
    print(f"[{NAME}] training {recipe}", flush=True)
    print(f"[{NAME}] pre-training the backbone as a shape classifier", flush=True)
    pretrained = classifier.train(recipe.backbone)
    net = deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=len(SHAPES) + 1, aux_loss=False
    )
    net.backbone.load_state_dict(pretrained.net.features.state_dict())
    model = Segmenter(net, recipe.resolution).to(memory_format=torch.channels_last)
    weights = torch.tensor(CLASS_WEIGHTS)
    print(f"[{NAME}] training on masks", flush=True)

    def loss_of_step(rng: np.random.Generator, progress: float) -> torch.Tensor:
        difficulty = min(1.0, progress / CURRICULUM)
        images, masks = segmentation_batch(rng, recipe.batch, SERVE_SIZE, difficulty)
        logits = model(to_tensor(images))["out"]
        return F.cross_entropy(logits, torch.from_numpy(masks).long(), weight=weights)

    fit(model, loss_of_step, recipe, name=NAME, weight_decay=1e-4)
    return model


def build(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Train and export the model into ``out`` (skipped if present) and return its config.

    ``quick`` builds the same model: a smaller recipe falls short of the tests' bars (half the
    steps at 96 pixels measured foreground IoU 0.67, right-class IoU 0.21).
    """
    entry = image_entry(NAME, "segmentation", RECIPE.resolution)
    return train_and_export(
        out, entry, lambda: classifier.plain(train(RECIPE).net), evaluate, force
    )


def evaluate(model_path: Path, n: int = 50, seed: int = EVAL_SEED) -> dict[str, float]:
    """IoU of the exported model on ``n`` fresh 256x256 images, resized to its resolution as
    the server resizes them, with the logits scaled back to 256.

    ``iou``: mean over every shape class present in an image of the IoU between predicted and
    true pixels of that class; ``hit_rate``: fraction of those with IoU > 0.5;
    ``foreground_iou``: class-agnostic shape-vs-background IoU.
    """
    model = load(model_path)
    images, masks = segmentation_batch(np.random.default_rng(seed), n, SERVE_SIZE)
    small = resized([Image.fromarray(image) for image in images], RECIPE.resolution)

    def masks_of(batch: np.ndarray) -> torch.Tensor:
        logits = model(to_tensor(batch))["out"]
        size = [SERVE_SIZE, SERVE_SIZE]
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)

    with torch.inference_mode():
        predicted = torch.cat([masks_of(small[i : i + 10]) for i in range(0, n, 10)]).numpy()
    ious = []
    for truth, guess in zip(masks, predicted, strict=True):
        for label in np.unique(truth[truth > 0]):
            union = np.logical_or(truth == label, guess == label).sum()
            ious.append(np.logical_and(truth == label, guess == label).sum() / union)
    foreground = (
        np.logical_and(masks > 0, predicted > 0).sum()
        / np.logical_or(masks > 0, predicted > 0).sum()
    )
    return {
        "iou": float(np.mean(ious)),
        "hit_rate": float(np.mean(np.array(ious) > 0.5)),
        "foreground_iou": float(foreground),
    }


def main(argv: Sequence[str] | None = None) -> None:
    cli(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
