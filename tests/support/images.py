"""Plain test pictures, in the colours that the fixture models tell apart (`tests/models.py`)."""

from __future__ import annotations

import io

from PIL import Image

RGB = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


def image_bytes(color: str, fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    mode = "RGBA" if fmt == "PNG" else "RGB"
    Image.new(mode, size, RGB[color]).save(buffer, fmt)
    return buffer.getvalue()


COLORS = ("red", "green", "blue")


def picture(index: int) -> bytes:
    """A tiny PNG whose colour the colour model names: red, green, blue in turn."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), RGB[COLORS[index % 3]]).save(buffer, "PNG")
    return buffer.getvalue()
