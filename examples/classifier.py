"""Shape classifiers (torchvision models) trained from scratch and exported to TorchScript.

The exported module takes what the server sends, an ImageNet-normalized float32 batch
``[N, 3, 224, 224]``, and returns logits ``[N, len(SHAPES)]``.  Internally it first downsamples
the batch (antialiased) to the resolution the ResNet was trained at: training at 224 would cost
several times more CPU for no gain on these images.  The training images are drawn at twice
that resolution (cheaper than at 224) and go through the same downsampling layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from examples.shapes import SHAPES, classification_batch, classification_sample, simple_picture
from examples.training import built, export, fit, image_entry, load, resized, to_tensor

SERVE_SIZE = 224
EVAL_SEED = 20240601
CURRICULUM = 0.5  # fraction of training over which the data ramps up to full difficulty


@dataclass(frozen=True)
class Recipe:
    """How to train one classifier; ``steps`` and ``seconds`` both bound the run (see ``fit``)."""

    arch: str
    resolution: int
    batch: int
    steps: int
    seconds: float
    lr: float
    zero_init_residual: bool = False  # ResNets only: start each residual block as identity
    seed: int = 0


class Downscaled(torch.nn.Module):
    """Resizes the input batch to ``resolution`` before running ``net``."""

    def __init__(self, net: torch.nn.Module, resolution: int) -> None:
        super().__init__()
        self.net = net
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [self.resolution, self.resolution]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return self.net(x)


def train(recipe: Recipe) -> torch.nn.Module:
    options = {"zero_init_residual": True} if recipe.zero_init_residual else {}
    net = getattr(torchvision.models, recipe.arch)(weights=None, num_classes=len(SHAPES), **options)
    model = Downscaled(net, recipe.resolution).to(memory_format=torch.channels_last)

    def loss_of_step(rng: np.random.Generator, progress: float) -> torch.Tensor:
        # Curriculum: from scratch, a ResNet barely learns on the full mix in a few hundred
        # steps, but it does on big shapes over plain backgrounds and then adapts quickly.
        difficulty = min(1.0, progress / CURRICULUM)
        images, labels = classification_batch(rng, recipe.batch, 2 * recipe.resolution, difficulty)
        logits = model(to_tensor(images))
        return F.cross_entropy(logits, torch.from_numpy(labels), label_smoothing=0.1)

    fit(
        model,
        loss_of_step,
        steps=recipe.steps,
        seconds=recipe.seconds,
        lr=recipe.lr,
        seed=recipe.seed,
    )
    return model


def build(out: Path, name: str, recipe: Recipe, force: bool = False) -> dict:
    """Train and export ``name`` into ``out`` unless it is already there; return its config."""
    entry = image_entry(name, "classification", SERVE_SIZE)
    if built(out, name, force):
        print(f"[{name}] already built in {out}")
        return entry
    print(f"[{name}] training {recipe}", flush=True)
    path = export(train(recipe), out, name, with_background=False)
    accuracy = evaluate(path, n=200)
    simple = simple_picture_accuracy(path)
    print(f"[{name}] accuracy {accuracy:.3f} on 200 fresh images, {simple:.3f} on simple pictures")
    return entry


def predict(model: torch.jit.ScriptModule, images: np.ndarray, batch: int = 50) -> np.ndarray:
    """Class indices for ``uint8 [N, 224, 224, 3]`` images."""
    with torch.inference_mode():
        logits = [model(to_tensor(images[i : i + batch])) for i in range(0, len(images), batch)]
    return torch.cat(logits).argmax(1).numpy()


def evaluate(model_path: Path, n: int = 200, seed: int = EVAL_SEED) -> float:
    """Accuracy of an exported classifier on ``n`` fresh 224x224 images."""
    rng = np.random.default_rng(seed)
    samples = [classification_sample(rng, SERVE_SIZE) for _ in range(n)]
    images = resized([image for image, _ in samples], SERVE_SIZE)
    labels = np.array([label for _, label in samples])
    return float((predict(load(model_path), images) == labels).mean())


def simple_picture_accuracy(model_path: Path) -> float:
    """Accuracy on plain user-style pictures (one big shape, several colours and aspect ratios)."""
    looks = [
        ((640, 480), (220, 30, 30), (255, 255, 255)),
        ((300, 300), (0, 0, 0), (255, 255, 255)),
        ((480, 640), (30, 60, 200), (240, 240, 200)),
        ((800, 600), (255, 255, 0), (20, 20, 20)),
    ]
    pictures = [
        simple_picture(shape, width, height, colour, background)
        for shape in SHAPES
        for (width, height), colour, background in looks
    ]
    labels = np.repeat(np.arange(len(SHAPES)), len(looks))
    predictions = predict(load(model_path), resized(pictures, SERVE_SIZE))
    return float((predictions == labels).mean())
