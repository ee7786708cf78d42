"""Request bodies: files named by the schedule, read once, typed by their extension.

A schedule entry without a payload gets `default_jpeg()`, a small picture of a
coloured shape, so a schedule works as it is against an image model.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".txt": "text/plain",
    ".json": "application/json",
    ".npy": "application/x-npy",
}
DEFAULT = ""  # the reference of the default payload in records


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str


def default_jpeg(size: int = 224) -> bytes:
    """An orange disc on a blue square: a JPEG of a few kilobytes, the same every time.

    A circle the demo model (trained on shapes) recognises; `bench.common.make_jpeg`
    is the photo-like input of the other benchmarks.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (30, 60, 160))
    margin = size // 5
    ImageDraw.Draw(image).ellipse(
        (margin, margin, size - margin, size - margin), fill=(240, 140, 20)
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def content_type(path: Path) -> str:
    try:
        return CONTENT_TYPES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(CONTENT_TYPES))
        raise ValueError(f"{path}: unknown payload type (known extensions: {known})") from None


def resolve(reference: str, schedule_dir: Path) -> Path:
    """A relative reference is looked for beside the schedule first, then from here."""
    path = Path(reference)
    if not path.is_absolute() and (schedule_dir / path).exists():
        return schedule_dir / path
    return path


def load_bodies(references: Iterable[str | None], schedule_dir: Path) -> dict[str, Body]:
    """Every distinct payload, read before the run starts (no file I/O while sending)."""
    bodies: dict[str, Body] = {}
    for reference in {r or DEFAULT for r in references}:
        if reference == DEFAULT:
            bodies[reference] = Body(default_jpeg(), "image/jpeg")
        else:
            path = resolve(reference, schedule_dir)
            bodies[reference] = Body(path.read_bytes(), content_type(path))
    return bodies
