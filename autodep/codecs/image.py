"""Images: JPEG, PNG, WebP or BMP, any mode -> a normalized float32 CHW tensor.

Only the formats the API names are decoded, chosen by the body's first bytes
(Pillow's `formats=`), whatever the Content-Type says: each other decoder Pillow
carries (TIFF, EPS through Ghostscript, JPEG 2000 ...) is attack surface no
client needs.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from autodep.codecs.base import Decoded, Payload
from autodep.config import ModelConfig
from autodep.errors import InvalidInput, UnsupportedMediaType

IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/png", "image/webp", "image/bmp", "image/x-ms-bmp"}
)
# Bodies that are sniffed instead of trusted: a multipart file part often says only this.
SNIFFED_TYPES = frozenset({"", "application/octet-stream"})
# Pillow's names of the formats the API accepts; any other body is refused unread.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
MAX_PIXELS = 40_000_000  # larger images are refused before decoding (decompression bombs)
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_EXIF_ORIENTATION = 0x0112


class ImageDecoder:
    def __init__(self, model: ModelConfig) -> None:
        pre = model.preprocess
        self.size = pre.resize  # (height, width) or None
        self.color = pre.color
        channels = 1 if pre.color == "L" else 3
        mean = np.array(pre.mean[:channels], np.float32)
        std = np.array(pre.std[:channels], np.float32)
        # (pixel / 255 - mean) / std, folded into one multiply and one add
        self._scale = 1 / (255 * std)
        self._shift = -mean / std
        self.channels = channels

    def check(self, payload: Payload) -> None:
        if isinstance(payload.data, str):
            raise UnsupportedMediaType("this model takes an image; send the image file's bytes")
        if payload.content_type not in IMAGE_TYPES | SNIFFED_TYPES:
            raise UnsupportedMediaType(
                f"unsupported content type {payload.content_type!r} for an image model; "
                "send image/jpeg, image/png, image/webp or image/bmp, or a multipart file"
            )

    def decode(self, payload: Payload) -> Decoded:
        self.check(payload)
        assert isinstance(payload.data, bytes)
        image, original = _open(payload.data, self.size)
        image = image.convert("L" if self.color == "L" else "RGB")
        if self.size is not None:
            height, width = self.size
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.color == "BGR":
            pixels = pixels[:, :, ::-1]
        tensor = np.ascontiguousarray((pixels * self._scale + self._shift).transpose(2, 0, 1))
        return Decoded([tensor], {"size": original})

    def example(self) -> tuple[tuple[tuple[int, ...], str], ...]:
        height, width = self.size or (320, 320)
        return (((self.channels, height, width), "float32"),)


def _open(data: bytes, size: tuple[int, int] | None) -> tuple[Image.Image, tuple[int, int]]:
    """Open, bound and orient an image; also return its upright (width, height)."""
    try:
        image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InvalidInput(
                f"image of {width}x{height} pixels is too large (at most {MAX_PIXELS:,})"
            )
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        if size is not None:
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for free: skip pixels the resize drops.
            side = max(size)
            image.draft(None, (side, side))
        image = ImageOps.exif_transpose(image)
        image.load()
    except UnidentifiedImageError:
        raise InvalidInput(
            "could not decode the image: its first bytes are not those of a JPEG, PNG, WebP "
            "or BMP file (the only formats served, whatever the Content-Type says)"
        ) from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        raise InvalidInput(
            f"could not decode the image ({exc}); send a valid JPEG, PNG, WebP or BMP file"
        ) from None
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return image, (width, height)
