"""What the benchmarks share: inputs (a resnet18 TorchScript file, a JPEG),
statistics, the printed table and the command line (`--quick` or a full run).

Every benchmark compares autodep's way against a baseline measured in the same
run, because the machine is shared (2 cores, other jobs): absolute times move
from run to run, ratios much less.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from autodep.config import ModelConfig

# The in-process baselines run as a user would run the model: torch's default
# threads and OpenMP's default waiting, whatever autodep chooses for its workers.
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")

IMAGE_SIZE = 224  # the side of the JPEG and of resnet18's input


# -- inputs ------------------------------------------------------------------


def make_resnet18(directory: Path) -> Path:
    """torchvision's resnet18 with untrained weights, scripted to `directory/resnet18.pt`."""
    import torch
    import torchvision

    torch.manual_seed(0)  # the same file every run: the optimizer's cache finds its search
    model = torchvision.models.resnet18(weights=None).eval()
    path = directory / "resnet18.pt"
    with warnings.catch_warnings():  # "torch.jit.script is deprecated": TorchScript is the input
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(path))
    return path


def make_jpeg(size: int = IMAGE_SIZE, seed: int = 0) -> bytes:
    """A size x size RGB JPEG: colour gradients plus noise, so it compresses like a photo.

    About 25 kB; the schedules' default payload (`autodep.loadtest.payloads.default_jpeg`) is a
    recognisable shape of about 4 kB instead.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * (255 / size)
    pixels = np.stack([x, y, (x + y) / 2], axis=-1) + rng.normal(0, 20, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def baseline_environment() -> str:
    """How this process (the in-process baseline) runs OpenMP: a line for the report."""
    set_here = [f"{k}={os.environ[k]}" for k in OMP_VARIABLES if k in os.environ]
    return ", ".join(set_here) if set_here else "default environment (no OpenMP variables set)"


class InProcess:
    """The server's pipeline for one model, called in this process as a user would call it.

    decode + preprocess (autodep's decoder), the worker's runner (model +
    softmax) and the encoder (top-5), with torch's default threads.
    """

    def __init__(self, config: ModelConfig) -> None:
        from autodep.codecs import DECODERS, ENCODERS
        from autodep.codecs.base import Options
        from autodep.worker.loading import load_model
        from autodep.worker.runners import make_runner

        self.decoder = DECODERS[config.input](config)
        self.encoder = ENCODERS[config.output](config)
        self.runner = make_runner(load_model(str(config.path)), config.input, config.output)
        self.options = Options(top_n=5)

    def __call__(self, body: bytes, batch: int = 1) -> tuple[list[dict[str, Any]], float]:
        """`batch` copies of one request: the answers and the seconds of the model call."""
        import torch

        from autodep.codecs.base import Payload

        decoded = [self.decoder.decode(Payload(body, "image/jpeg")) for _ in range(batch)]
        with torch.inference_mode():
            began = time.perf_counter()
            outputs = self.runner([[torch.from_numpy(t) for t in d.tensors] for d in decoded])
            model_s = time.perf_counter() - began
        answers = [
            self.encoder.encode([t.numpy() for t in out], d.meta, self.options)
            for out, d in zip(outputs, decoded, strict=True)
        ]
        return answers, model_s


def model_config(path: Path, resize: int) -> ModelConfig:
    """A bare classifier file, its input resized to resize x resize."""
    from autodep.config import Preprocess, model_from_file

    return model_from_file(path).model_copy(update={"preprocess": Preprocess(resize=resize)})


def write_repository(config: ModelConfig, directory: Path) -> Path:
    """A one-model repository YAML that serves `config` as `autodep.serve --config` reads it."""
    import yaml

    entry = {
        "name": config.name,
        "path": str(config.path),
        "preprocess": {"resize": list(config.preprocess.resize or ())},
    }
    path = directory / f"{config.name}.yaml"
    path.write_text(yaml.safe_dump({"models": [entry]}))
    return path


# -- statistics --------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Median and 90th percentile of timed samples, in seconds."""

    n: int
    median: float
    p90: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        values = np.asarray(samples, dtype=np.float64)
        return cls(len(values), float(np.median(values)), float(np.percentile(values, 90)))


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


# -- output ------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f}"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x"


def print_header(title: str, mode: str) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"== {title} ({mode}) ==")
    print(f"cpu: {cpu_model()}, {len(os.sched_getaffinity(0))} cores, load average {load}")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        cells = [
            str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def cpu_model() -> str:
    """The "model name" line of /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


# -- command line ------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A numeric option with a full-run default and a `--quick` default."""

    name: str
    full: int
    quick: int
    help: str


def parse_args(
    description: str,
    params: Sequence[Param],
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> argparse.Namespace:
    """Options left unset take the `--quick` or the full-run default; `mode` names which.

    A benchmark with options of its own passes its `parser` with them."""
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (seconds)")
    for param in params:
        parser.add_argument(
            "--" + param.name.replace("_", "-"),
            type=int,
            default=None,
            help=f"{param.help} (default {param.full}; {param.quick} with --quick)",
        )
    args = parser.parse_args(argv)
    for param in params:
        if getattr(args, param.name) is None:
            setattr(args, param.name, param.quick if args.quick else param.full)
    args.mode = "quick" if args.quick else "full"
    return args
