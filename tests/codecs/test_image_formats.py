"""Only JPEG, PNG, WebP and BMP are decoded, by their first bytes, whatever the Content-Type."""

from __future__ import annotations

import io
import json
import os
import stat
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
from PIL import Image

from autodep.testing.server import ServerProcess
from tests.support.images import image_bytes

# Formats Pillow reads that the API does not name; each was answered 200 (EPS: run
# through Ghostscript) when sent as image/png.
OTHER_FORMATS = ("GIF", "TIFF", "ICO", "PPM", "TGA", "PCX", "SGI", "IM", "DDS", "QOI", "JPEG2000")


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # Pillow deprecates writing some of them (IM)
        warnings.simplefilter("ignore", DeprecationWarning)
        Image.new("RGB", (16, 16), (20, 230, 20)).save(buffer, fmt)
    return buffer.getvalue()


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def fake_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `gs` first on PATH that leaves a marker file if anything runs it; the marker's path."""
    marker = tmp_path / "ghostscript-ran"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {marker}\n")
    gs.chmod(gs.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return marker


def test_only_the_named_formats_are_decoded(color_model, tmp_path, fake_ghostscript):
    flags = ["--model", str(color_model), "--max-workers", "1"]
    with ServerProcess("formats", flags, tmp_path / "server.log") as server:
        url = server.url() + "/predict"
        for fmt in (*OTHER_FORMATS, "EPS"):
            status, answer = _post(url, _encoded(fmt), "image/png")
            assert status == 400, (fmt, answer)
            assert "not those of a JPEG, PNG, WebP or BMP file" in str(answer["error"]), fmt
        assert not fake_ghostscript.exists(), "an EPS body reached Ghostscript"
        # The four named formats still decode, whatever type they are sent as.
        for fmt in ("JPEG", "PNG", "WEBP", "BMP"):
            status, answer = _post(url, image_bytes("green", fmt), "application/octet-stream")
            assert status == 200, (fmt, answer)
            assert answer["predictions"][0]["label"] == "green"  # type: ignore[index]
    assert server.process.returncode == 0 and server.orphans == []
