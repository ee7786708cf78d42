"""Shape classifiers (torchvision ResNets) trained from scratch and exported to TorchScript.

``python -m examples.demo`` builds the ResNet-18, ``python -m examples.build`` both.

The exported module is the plain torchvision ResNet: it takes an ImageNet-normalized float32
batch ``[N, 3, R, R]`` at the resolution ``R`` it was trained at (48 pixels for the ResNet-18,
64 for the ResNet-50) and returns logits ``[N, len(SHAPES)]``; the model's config entry has the
server resize pictures to ``R`` (``preprocess.resize``).  Training at 224 would cost several
times more CPU for no gain on these images.  The training images are drawn at twice that
resolution and downsampled (antialiased, as the server's resize does) in training only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from examples.shapes import SHAPES, classification_batch, classification_sample, simple_picture
from examples.training import fit, image_entry, load, resized, to_tensor, train_and_export

SERVE_SIZE = 224
EVAL_SEED = 20240601
CURRICULUM = 0.5  # fraction of training over which the data ramps up to full difficulty


@dataclass(frozen=True)
class Recipe:
    """How to train one classifier (see ``fit``)."""

    arch: str
    resolution: int
    batch: int
    steps: int
    lr: float
    zero_init_residual: bool = False  # ResNets only: start each residual block as identity
    # Progressive resizing: start at this resolution and reach ``resolution`` along with full
    # difficulty.  Early steps on big, plain shapes need little resolution and cost less.
    start_resolution: int | None = None
    seed: int = 0


class Downscaled(torch.nn.Module):
    """Resizes the input batch to ``resolution`` before running ``net`` (training only)."""

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

    start = recipe.start_resolution or recipe.resolution

    def loss_of_step(rng: np.random.Generator, progress: float) -> torch.Tensor:
        # Curriculum: from scratch, a ResNet barely learns on the full mix in a few hundred
        # steps, but it does on big shapes over plain backgrounds and then adapts quickly.
        difficulty = min(1.0, progress / CURRICULUM)
        model.resolution = round(start + (recipe.resolution - start) * difficulty)
        images, labels = classification_batch(rng, recipe.batch, 2 * model.resolution, difficulty)
        logits = model(to_tensor(images))
        return F.cross_entropy(logits, torch.from_numpy(labels), label_smoothing=0.1)

    fit(model, loss_of_step, recipe, name=recipe.arch)
    model.resolution = recipe.resolution
    return model


# ResNet-50 needs more steps and a higher resolution than ResNet-18 for the same accuracy here.
RECIPES = {
    "resnet18": Recipe(
        "resnet18", resolution=48, batch=32, steps=500, lr=3e-3, start_resolution=32
    ),
    "resnet50": Recipe(
        "resnet50",
        resolution=64,
        batch=32,
        steps=700,
        lr=2e-3,
        zero_init_residual=True,
        start_resolution=32,
    ),
}


def build(out: Path, quick: bool = False, force: bool = False, name: str = "resnet18") -> dict:
    """Train and export classifier ``name`` into ``out`` (skipped if present); return its config.

    ``quick`` builds the same model: the tests check the classifiers users get (a smaller
    ResNet-50, 400 steps at 40 pixels, scored 0.585 and missed user-style pictures).
    """
    recipe = RECIPES[name]

    def scores(path: Path) -> dict[str, float]:
        return {"accuracy": evaluate(path), "simple pictures": simple_picture_accuracy(path)}

    def trained() -> torch.nn.Module:
        print(f"[{name}] training {recipe}", flush=True)
        return plain(train(recipe).net)

    entry = image_entry(name, "classification", recipe.resolution)
    return train_and_export(out, entry, trained, scores, force)


def plain(net: torch.nn.Module) -> torch.nn.Module:
    """The network in the default memory format, as torchvision makes it (it trained
    channels-last)."""
    return net.to(memory_format=torch.contiguous_format)


def resolution_of(model_path: Path) -> int:
    """The input size the exported classifier was trained at (its file stem names the recipe)."""
    return RECIPES[model_path.stem].resolution


def predict(model: torch.jit.ScriptModule, images: np.ndarray, batch: int = 50) -> np.ndarray:
    """Class indices for ``uint8 [N, R, R, 3]`` images at the model's resolution."""
    with torch.inference_mode():
        logits = [model(to_tensor(images[i : i + batch])) for i in range(0, len(images), batch)]
    return torch.cat(logits).argmax(1).numpy()


def evaluate(model_path: Path, n: int = 200, seed: int = EVAL_SEED) -> float:
    """Accuracy of an exported classifier on ``n`` fresh 224x224 images, resized as the
    server resizes them."""
    rng = np.random.default_rng(seed)
    samples = [classification_sample(rng, SERVE_SIZE) for _ in range(n)]
    images = resized([image for image, _ in samples], resolution_of(model_path))
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
    predictions = predict(load(model_path), resized(pictures, resolution_of(model_path)))
    return float((predictions == labels).mean())
