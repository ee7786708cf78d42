"""Seeded generator of synthetic images of coloured shapes.

Every example model is trained here from scratch on these images, so the
generator deliberately varies everything that is not the shape itself: size
(from small to filling most of the image), position, rotation, mild
stretching (the server stretches user pictures to a square), colours,
backgrounds (plain, gradients, smooth noise, clutter lines) and compression
artefacts.  Only numpy and PIL are used; a 224x224 sample takes a few
milliseconds.

All functions take a ``numpy.random.Generator`` so datasets are reproducible.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "hexagon")

# Minimum RGB distance between a shape and the background behind it.
_MIN_CONTRAST = 90.0


def _outline(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Polygon ``[K, 2]`` of ``shape`` with circumradius 1 around the origin, randomly rotated
    and sometimes stretched (circles are 64-gons)."""
    if shape == "circle":
        angles = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
        radii = np.ones_like(angles)
    elif shape == "star":
        angles = np.linspace(0.0, 2 * np.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
    else:
        corners = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        angles = np.linspace(0.0, 2 * np.pi, corners, endpoint=False)
        radii = np.ones_like(angles)
    angles = angles + rng.uniform(0.0, 2 * np.pi)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if rng.random() < 0.3:
        # Stretch along x or y, as when a non-square photo is resized to a square.
        points = points * np.exp(rng.uniform(-0.25, 0.25, size=2))
    return points


def _place(points: np.ndarray, radius: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Scale a unit outline to ``radius`` and move it to a random spot inside the image."""
    points = points * radius
    low, high = points.min(axis=0), points.max(axis=0)
    extent = (high - low).max()
    if extent > size - 2:
        points = points * (size - 2) / extent
        low, high = points.min(axis=0), points.max(axis=0)
    offset = rng.uniform(-low, size - 1 - high)
    return points + offset


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _contrasting_colour(behind: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    """A random colour far enough from ``behind`` (mean background colour) to be visible."""
    colour = _random_colour(rng)
    for _ in range(50):
        if np.linalg.norm(colour - behind) >= _MIN_CONTRAST:
            break
        colour = _random_colour(rng)
    else:
        colour = np.where(behind > 127, 0.0, 255.0)
    r, g, b = (int(c) for c in colour)
    return r, g, b


def _background(rng: np.random.Generator, size: int, difficulty: float) -> np.ndarray:
    """Float32 ``[size, size, 3]`` background: plain, gradient or smooth noise."""
    kind = rng.choice(["plain", "gradient", "noise"], p=[0.4, 0.35, 0.25])
    if kind == "plain" or rng.random() > difficulty:
        return np.broadcast_to(_random_colour(rng), (size, size, 3)).copy()
    if kind == "gradient":
        angle = rng.uniform(0.0, 2 * np.pi)
        axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        t = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None] + 0.5
        t = t[..., None]
        return (1 - t) * _random_colour(rng) + t * _random_colour(rng)
    cells = int(rng.integers(2, 9))
    grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    smooth = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(smooth, dtype=np.float32)


def _clutter(draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> None:
    """Random thin lines and small dots that are not shapes."""
    for _ in range(int(rng.integers(1, 7))):
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, size=4))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, max(2, size // 75) + 1)))
    for _ in range(int(rng.integers(0, 6))):
        x, y = (float(v) for v in rng.uniform(0, size, size=2))
        r = float(rng.uniform(1, max(2.0, size / 90)))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _degrade(image: Image.Image, rng: np.random.Generator, difficulty: float) -> Image.Image:
    """Occasional blur, sensor noise and JPEG compression."""
    chance = 0.25 * difficulty
    if rng.random() < chance:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.5))))
    if rng.random() < chance:
        noise = rng.standard_normal((*image.size[::-1], 3), dtype=np.float32)
        noisy = np.asarray(image) + noise * np.float32(rng.uniform(3, 15))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if rng.random() < chance:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(15, 70)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


class _Canvas:
    """An image with a background, plus a label mask drawn in lockstep.

    ``difficulty`` in 0..1 scales the odds of busy backgrounds, clutter and degradation
    (1 = the full mix), for curriculum training.
    """

    def __init__(self, rng: np.random.Generator, size: int, difficulty: float = 1.0) -> None:
        self.rng = rng
        self.size = size
        self.difficulty = difficulty
        self.image = Image.fromarray(_background(rng, size, difficulty).astype(np.uint8))
        self.draw = ImageDraw.Draw(self.image)
        if rng.random() < 0.4 * difficulty:
            _clutter(self.draw, size, rng)
        self.mask = Image.new("L", (size, size), 0)
        self.mask_draw = ImageDraw.Draw(self.mask)

    def add(self, shape: str, points: np.ndarray, outline: bool = False) -> None:
        """Draw ``shape`` (``points`` in pixels) in a colour that stands out from what is behind."""
        low = np.clip(points.min(axis=0).astype(int), 0, self.size - 1)
        high = np.clip(points.max(axis=0).astype(int) + 1, 1, self.size)
        region = np.asarray(self.image.crop((int(low[0]), int(low[1]), int(high[0]), int(high[1]))))
        behind = region.reshape(-1, 3).mean(axis=0)
        colour = _contrasting_colour(behind, self.rng)
        polygon = [(float(x), float(y)) for x, y in points]
        label = SHAPES.index(shape) + 1
        if outline:
            width = max(2, int((high - low).max() * self.rng.uniform(0.06, 0.12)))
            self.draw.polygon(polygon, outline=colour, width=width)
            self.mask_draw.polygon(polygon, outline=label, width=width)
        else:
            self.draw.polygon(polygon, fill=colour)
            self.mask_draw.polygon(polygon, fill=label)

    def finish(self) -> Image.Image:
        return _degrade(self.image, self.rng, self.difficulty)


def classification_sample(
    rng: np.random.Generator, size: int = 224, difficulty: float = 1.0
) -> tuple[Image.Image, int]:
    """One RGB image containing a single shape, and that shape's index in ``SHAPES``.

    Lower ``difficulty`` means bigger shapes and plainer images (see ``_Canvas``).  The shape
    spans at least 40% of the image (the classifiers see it downscaled to 48 pixels; at 24%, the
    smallest were a few pixels wide there and capped their accuracy).
    """
    label = int(rng.integers(len(SHAPES)))
    canvas = _Canvas(rng, size, difficulty)
    radius = size * rng.uniform(0.3 - 0.1 * difficulty, 0.5)
    points = _place(_outline(SHAPES[label], rng), radius, size, rng)
    canvas.add(SHAPES[label], points, outline=rng.random() < 0.05 * difficulty)
    return canvas.finish(), label


def segmentation_sample(
    rng: np.random.Generator, size: int = 256, difficulty: float = 1.0
) -> tuple[Image.Image, np.ndarray]:
    """An image with 1-3 (possibly overlapping) shapes and its ``uint8 [H, W]`` class mask.

    Mask values: 0 = background, ``k + 1`` = ``SHAPES[k]``.
    """
    canvas = _Canvas(rng, size, difficulty)
    for _ in range(int(rng.integers(1, 4))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        radius = size * rng.uniform(0.25 - 0.13 * difficulty, 0.4)
        canvas.add(shape, _place(_outline(shape, rng), radius, size, rng))
    return canvas.finish(), np.asarray(canvas.mask, dtype=np.uint8).copy()


def _overlap(box: np.ndarray, others: list[np.ndarray]) -> float:
    """Largest intersection of ``box`` with any of ``others``, relative to the smaller box."""
    worst = 0.0
    for other in others:
        w = min(box[2], other[2]) - max(box[0], other[0])
        h = min(box[3], other[3]) - max(box[1], other[1])
        if w > 0 and h > 0:
            smaller = min(np.prod(box[2:] - box[:2]), np.prod(other[2:] - other[:2]))
            worst = max(worst, w * h / smaller)
    return worst


def detection_sample(
    rng: np.random.Generator, size: int = 320, difficulty: float = 1.0
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """An image with 1-4 barely overlapping shapes, their boxes and labels.

    Boxes are ``float32 [N, 4]`` (x1, y1, x2, y2) in pixels; labels are
    ``int64 [N]`` in ``1..len(SHAPES)`` because torchvision detection models
    reserve 0 for the background.
    """
    canvas = _Canvas(rng, size, difficulty)
    wanted = int(rng.integers(1, 5))
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(wanted * 10):
        if len(boxes) == wanted:
            break
        label = int(rng.integers(len(SHAPES)))
        radius = size * rng.uniform(0.15 - 0.07 * difficulty, 0.4 if wanted == 1 else 0.25)
        points = _place(_outline(SHAPES[label], rng), radius, size, rng)
        box = np.concatenate([points.min(axis=0), points.max(axis=0) + 1]).clip(0, size)
        if _overlap(box, boxes) > 0.1:
            continue
        canvas.add(SHAPES[label], points)
        boxes.append(box)
        labels.append(label + 1)
    return canvas.finish(), np.array(boxes, dtype=np.float32), np.array(labels, dtype=np.int64)


def classification_batch(
    rng: np.random.Generator, n: int, size: int = 224, difficulty: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` classification samples as ``uint8 [n, H, W, 3]`` images and ``int64 [n]`` labels."""
    samples = [classification_sample(rng, size, difficulty) for _ in range(n)]
    images = np.stack([np.asarray(image) for image, _ in samples])
    return images, np.array([label for _, label in samples], dtype=np.int64)


def segmentation_batch(
    rng: np.random.Generator, n: int, size: int = 256, difficulty: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` segmentation samples as ``uint8 [n, H, W, 3]`` images and ``uint8 [n, H, W]`` masks."""
    samples = [segmentation_sample(rng, size, difficulty) for _ in range(n)]
    return np.stack([np.asarray(image) for image, _ in samples]), np.stack(
        [mask for _, mask in samples]
    )


def simple_picture(
    shape: str,
    width: int = 640,
    height: int = 480,
    colour: tuple[int, int, int] = (220, 30, 30),
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """What a user might upload: one big upright shape centred on a plain background."""
    image = Image.new("RGB", (width, height), background)
    radius = 0.4 * min(width, height)
    points = _outline_upright(shape) * radius + np.array([width / 2, height / 2])
    ImageDraw.Draw(image).polygon([(float(x), float(y)) for x, y in points], fill=colour)
    return image


def _outline_upright(shape: str) -> np.ndarray:
    """Unit outline with a vertex pointing up (squares sit flat), as people draw them."""
    corners = {"circle": 64, "square": 4, "triangle": 3, "star": 10, "hexagon": 6}[shape]
    angles = np.linspace(0.0, 2 * np.pi, corners, endpoint=False) - np.pi / 2
    if shape == "square":
        angles = angles + np.pi / 4
    radii = (
        np.where(np.arange(corners) % 2 == 1, 0.45, 1.0) if shape == "star" else np.ones(corners)
    )
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def main() -> None:
    """Write a few samples of each kind to ``--out`` for a visual check."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    palette = np.linspace(0, 255, len(SHAPES) + 1).astype(np.uint8)
    for i in range(args.n):
        image, label = classification_sample(rng)
        image.save(args.out / f"classification_{i}_{SHAPES[label]}.png")
        image, mask = segmentation_sample(rng)
        image.save(args.out / f"segmentation_{i}.png")
        Image.fromarray(palette[mask]).save(args.out / f"segmentation_{i}_mask.png")
        image, boxes, labels = detection_sample(rng)
        image.save(args.out / f"detection_{i}.png")
        draw = ImageDraw.Draw(image)
        for box, label in zip(boxes, labels, strict=True):
            draw.rectangle([float(v) for v in box], outline=(255, 0, 255))
            draw.text((float(box[0]) + 2, float(box[1]) + 2), SHAPES[label - 1], fill=(255, 0, 255))
        image.save(args.out / f"detection_{i}_boxes.png")
    for shape in SHAPES:
        simple_picture(shape).save(args.out / f"simple_{shape}.png")
    print(f"wrote samples to {args.out}")


if __name__ == "__main__":
    main()
