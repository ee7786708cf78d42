"""The gate's inputs: files from the model's `optimize.samples` folder, else generated ones.

Either way they go through the model's own decoder, as requests do. Generated images come in
several sizes, aspect ratios and colours (plain, gradients, shapes, noise); texts are a few
sentences of different lengths and tones; tensor models get random tensors of their shape.

Calibration inputs (int8 candidates set their scales on them) never include a sample the gate
judges those candidates on: from a samples folder, every other file (at most
`CALIBRATION_INPUTS`) calibrates and the gate judges int8 on the files left; without a folder
(or with a folder of one file), the decoder's own inputs of another seed calibrate and every
gate sample is held out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from autodep.codecs import Payload, codec_for
from autodep.config import ModelConfig

Sample = list[np.ndarray]  # one request's input tensors

SIZES = ((224, 224), (640, 480), (300, 500), (96, 128), (1000, 250))
SENTENCES = (
    "The soup was absolutely wonderful!",
    "I did not enjoy the film at all.",
    "An ordinary day, nothing special.",
    "Terrible service, cold food and a rude waiter; never again.",
    "What a lovely surprise, thank you so much for the flowers.",
    "The train was late again.",
    "ok",
    "Best concert I have ever been to, the band played for three hours and nobody wanted to go"
    " home.",
)
CONTENT_TYPES = {".txt": "text/plain", ".npy": "application/x-npy", ".json": "application/json"}


CALIBRATION_INPUTS = 64  # enough for per-tensor scales; calibration time grows with it
GATE_SEED, CALIBRATION_SEED = 1234, 4321


@dataclass(frozen=True)
class Calibration:
    """Inputs to calibrate int8 scales on, and the gate samples none of them is."""

    inputs: list[Sample]
    held_out: tuple[int, ...]  # indices into `samples(model)`
    source: str  # where the inputs come from, for the candidate table

    def note(self) -> str:
        return f"calibrated on {self.source}; gated on {len(self.held_out)} held-out samples"


def samples(model: ModelConfig, count: int = 16) -> list[Sample]:
    decoder = codec_for(model).decoder
    payloads = _from_folder(model.optimize.samples) if model.optimize.samples else None
    if payloads is None:
        payloads = _generated(model, count)
    return [decoder.decode(payload).tensors for payload in payloads]


def calibration_for(model: ModelConfig, gate_samples: int) -> Calibration:
    """Calibration inputs for ``model``, whose gate judges ``gate_samples`` samples."""
    decoder = codec_for(model).decoder
    folder = model.optimize.samples
    if folder is not None and gate_samples >= 2:
        chosen = range(1, gate_samples, 2)[:CALIBRATION_INPUTS]
        payloads = _from_folder(folder)
        inputs = [decoder.decode(payloads[i]).tensors for i in chosen]
        held_out = tuple(i for i in range(gate_samples) if i not in chosen)
        return Calibration(
            inputs, held_out, f"{len(inputs)} of the {gate_samples} files in {folder}"
        )
    payloads = _generated(model, CALIBRATION_INPUTS, seed=CALIBRATION_SEED)
    inputs = [decoder.decode(payload).tensors for payload in payloads]
    why = "" if folder is None else f" ({folder} has one file, the gate's)"
    return Calibration(inputs, tuple(range(gate_samples)), f"{len(inputs)} generated inputs{why}")


def _from_folder(folder: Path) -> list[Payload]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"the samples folder {folder} has no files")
    return [Payload.of(f.read_bytes(), CONTENT_TYPES.get(f.suffix.lower(), "")) for f in files]


def _generated(model: ModelConfig, count: int, seed: int = GATE_SEED) -> list[Payload]:
    rng = np.random.default_rng(seed)
    if model.input == "text":
        return [Payload.of(text) for text in SENTENCES]
    if model.input == "tensor":
        shape = model.input_shape or ()
        return [_npy(rng.standard_normal(shape).astype(np.float32)) for _ in range(count)]
    return [_png(_picture(rng, SIZES[i % len(SIZES)], i)) for i in range(count)]


def _picture(rng: np.random.Generator, size: tuple[int, int], index: int) -> Image.Image:
    width, height = size
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    style = index % 4
    if style == 0:  # plain colour
        return Image.new("RGB", size, colour)
    if style == 1:  # a gradient between two colours
        other = rng.integers(0, 256, 3)
        ramp = np.linspace(0, 1, width)[None, :, None]
        pixels = (1 - ramp) * np.array(colour) + ramp * other
        return Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).astype(np.uint8))
    if style == 2:  # noise
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    image = Image.new("RGB", size, tuple(255 - c for c in colour))  # shapes on a background
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x1, y1 = x0 + int(rng.integers(width // 8, width // 2)), y0 + int(rng.integers(4, height))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    return image


def _png(image: Image.Image) -> Payload:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return Payload.of(buffer.getvalue(), "image/png")


def _npy(array: np.ndarray) -> Payload:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return Payload.of(buffer.getvalue(), "application/x-npy")
