"""Pieces shared by the image example models: tensors, the training loop, export and config."""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import yaml
from PIL import Image

from examples.shapes import SHAPES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Torch threads per training: `examples.build` sets it to the cores shared among its jobs.
THREADS = int(os.environ.get("EXAMPLES_THREADS", "2"))


def to_tensor(images: np.ndarray, normalize: bool = True) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` images to a float32 ``[N, 3, H, W]`` batch, as the server builds it.

    With ``normalize`` the batch is ImageNet-normalized, otherwise scaled to 0..1.
    """
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        batch = (batch - mean) / std
    return batch.contiguous(memory_format=torch.channels_last)


def resized(images: list[Image.Image], size: int) -> np.ndarray:
    """Stretch each image to ``size x size`` RGB (the server's ``resize`` step) and stack them."""
    return np.stack(
        [
            np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            for image in images
        ]
    )


class Schedule(Protocol):
    """What ``fit`` reads from a model's recipe."""

    @property
    def steps(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def seed(self) -> int: ...


def fit(
    model: torch.nn.Module,
    loss_of_step: Callable[[np.random.Generator, float], torch.Tensor],
    schedule: Schedule,
    *,
    name: str,
    weight_decay: float = 0.05,
    log_every: int = 10,
    calibration_steps: int = 20,
) -> None:
    """Train ``model`` with AdamW, warm-up and cosine decay.

    ``loss_of_step(rng, progress)`` generates a fresh batch (``progress`` = ``step / steps`` in
    0..1 allows a curriculum) and returns its loss.  The run is a fixed number of steps, not a
    time budget: on a busy machine it takes longer but learns the same (a time cap once cut a
    demo build to a tenth of its steps and chance accuracy).  Finally the BatchNorm statistics
    are re-estimated (see ``recalibrate_batchnorm``).
    """
    steps, lr = schedule.steps, schedule.lr
    torch.set_num_threads(THREADS)
    torch.manual_seed(schedule.seed)
    rng = np.random.default_rng(schedule.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    model.train()
    start = time.monotonic()
    for step in range(steps):
        progress = step / steps
        warmup = min(1.0, progress / 0.05)
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup * 0.5 * (1 + math.cos(math.pi * progress))
        loss = loss_of_step(rng, progress)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.monotonic() - start
            print(
                f"  [{name}] step {step + 1:4d}  loss {loss.item():.4f}  {elapsed:5.0f}s",
                flush=True,
            )
    recalibrate_batchnorm(model, lambda: loss_of_step(rng, 1.0), calibration_steps)


def recalibrate_batchnorm(
    model: torch.nn.Module, forward: Callable[[], object], steps: int
) -> None:
    """Replace BatchNorm running statistics by their plain average over ``steps`` forward passes.

    Running averages lag behind weights that are still changing fast at the end of a short
    training run (torchvision's MobileNetV3 uses momentum 0.01): the eval-mode DeepLab
    predicted background everywhere although it segmented well in train mode.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            forward()
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def script(model: torch.nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` the eval-mode model (TorchScript is what the server loads, so its
    deprecation warning is noise here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(model.eval())


def export(model: torch.nn.Module, out: Path, name: str, with_background: bool) -> Path:
    """Write ``name``'s labels and scripted model to ``out``; return the model's path.

    The model is written last and atomically, so ``built`` never sees a half-written file.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out / f"{name}.labels.txt", with_background)
    path = out / f"{name}.pt"
    partial = out / f"{name}.pt.partial"
    script(model).save(str(partial))
    partial.replace(path)
    return path


def export_program(model: torch.nn.Module, path: Path, example: torch.Tensor) -> None:
    """Also write ``model`` as a ``torch.export`` program with a dynamic batch size, which the
    server loads like TorchScript, if it exports."""
    batch = torch.export.Dim("batch", min=1, max=64)
    try:
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    except Exception as error:  # torch.export fails in many ways; the TorchScript file is enough
        print(f"[{path.stem}] no {path.name}: {type(error).__name__}: {error}".splitlines()[0])
        return
    with warnings.catch_warnings():  # about weights not on the CPU; they all are
        warnings.filterwarnings("ignore", "No complete tensor found")
        torch.export.save(program, str(path))
    print(f"[{path.stem}] also wrote {path.name} (torch.export)", flush=True)


def load(path: Path) -> torch.jit.ScriptModule:
    torch.set_num_threads(THREADS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def write_labels(path: Path, with_background: bool) -> None:
    names = ("background", *SHAPES) if with_background else SHAPES
    path.write_text("".join(f"{name}\n" for name in names))


def built(out: Path, name: str, force: bool) -> bool:
    """Whether ``name``'s model and labels already exist in ``out`` and may be reused."""
    return not force and (out / f"{name}.pt").is_file() and (out / f"{name}.labels.txt").is_file()


def train_and_export(
    out: Path,
    entry: dict,
    train: Callable[[], torch.nn.Module],
    evaluate: Callable[[Path], dict[str, float]],
    force: bool = False,
) -> dict:
    """Train, export and evaluate the model of config ``entry`` unless ``out`` has it; return
    ``entry``."""
    name = entry["name"]
    if built(out, name, force):
        print(f"[{name}] already built in {out}")
        return entry
    started = time.monotonic()
    model = train()
    path = export(model, out, name, with_background=entry["output"] != "classification")
    resize = entry["preprocess"]["resize"]
    if resize is not None:  # a stacked batch; a detector takes a list of any-size images
        export_program(model, out / f"{name}.pt2", torch.zeros(2, 3, *resize))
    scores = evaluate(path)
    summary = ", ".join(f"{key} {value:.3f}" for key, value in scores.items())
    print(f"[{name}] built in {time.monotonic() - started:.0f}s: {summary}", flush=True)
    return entry


def image_entry(
    name: str,
    output: str,
    resize: int | None,
    normalize: bool = True,
    workers: tuple[int, int] = (1, 2),
) -> dict:
    """The model's entry in ``models.yaml`` (paths relative to the YAML file)."""
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize else ((0.0,) * 3, (1.0,) * 3)
    return {
        "name": name,
        "path": f"{name}.pt",
        "input": "image",
        "output": output,
        "labels": f"{name}.labels.txt",
        "preprocess": {
            "resize": None if resize is None else [resize, resize],
            "mean": list(mean),
            "std": list(std),
            "color": "RGB",
        },
        "workers": {"min": workers[0], "max": workers[1]},
    }


class _Dumper(yaml.SafeDumper):
    """Block-style YAML, except lists of numbers (``resize``, ``mean``, ``std``) on one line."""

    def represent_list(self, data: list) -> yaml.SequenceNode:
        flat = all(isinstance(item, int | float) for item in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _Dumper.represent_list)


def write_config(path: Path, entries: list[dict]) -> None:
    """A model repository YAML of ``entries`` (paths relative to the file)."""
    path.write_text(yaml.dump({"models": entries}, Dumper=_Dumper, sort_keys=False))


def cli(build: Callable[..., dict], description: str, argv: Sequence[str] | None = None) -> None:
    """The command line shared by the model modules: ``--out DIR [--quick] [--force]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="smaller, faster build for tests")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    args = parser.parse_args(argv)
    build(args.out, quick=args.quick, force=args.force)
