"""The five example models, built from one command and served together from one config.

Answers are checked for being right, not only well-formed: fresh generated
inputs (seeds the training never used) against their known labels, masks and boxes.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autodep import Autodep
from examples import shapes, text_model

BUILD = Path(__file__).resolve().parent.parent / ".cache" / "test-models" / "quick"
NAMES = {"resnet18", "resnet50", "deeplabv3", "fasterrcnn", "roberta"}
# The first test here waits for the build (minutes, once; then cached). Not part of
# the default run until the five-model build is fast and reliable: `pytest -m models`.
pytestmark = [pytest.mark.models, pytest.mark.timeout(1500)]


@pytest.fixture(scope="session")
def repository() -> Path:
    """`python -m examples.build --quick` (cached under .cache/ between runs)."""
    subprocess.run(
        [sys.executable, "-m", "examples.build", "--out", str(BUILD), "--quick"],
        check=True,
        timeout=1500,
    )
    return BUILD / "models.yaml"


@pytest.fixture
async def server(serve, repository):
    return await serve(config=Autodep(repository=repository, max_workers=1).config)


def encoded(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


async def test_one_config_serves_all_five(server):
    _, body = await server.get("/status")
    assert set(body["models"]) == NAMES


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
async def test_classifiers_label_fresh_images(server, name):
    rng = np.random.default_rng(4242)
    samples = [shapes.classification_sample(rng) for _ in range(30)]
    right = 0
    for image, label in samples:
        status, body, _ = await server.predict(encoded(image), f"/predict/{name}")
        assert status == 200, body
        right += body["predictions"][0]["label"] == shapes.SHAPES[label]
    assert right / len(samples) >= 0.7  # five classes: chance is 0.2


async def test_segmenter_mask_overlaps_the_true_shapes(server):
    rng = np.random.default_rng(4343)
    scores = []
    for _ in range(6):
        image, truth = shapes.segmentation_sample(rng)
        status, body, _ = await server.predict(
            encoded(image, "PNG"), "/predict/deeplabv3", content_type="image/png"
        )
        assert status == 200, body
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
        assert mask.shape == truth.shape  # at the input's resolution
        predicted, actual = mask > 0, truth > 0
        scores.append((predicted & actual).sum() / (predicted | actual).sum())
        assert set(body["classes"]) <= {"background", *shapes.SHAPES}
    assert np.median(scores) > 0.5


async def test_detector_finds_the_true_boxes(server):
    rng = np.random.default_rng(4444)
    hits = []
    for _ in range(6):
        image, boxes, _ = shapes.detection_sample(rng)
        status, body, _ = await server.predict(
            encoded(image, "PNG"), "/predict/fasterrcnn?threshold=0.3", content_type="image/png"
        )
        assert status == 200, body
        if not body["detections"]:
            hits.append(0.0)
            continue
        best = body["detections"][0]  # the highest score first
        hits.append(max(iou(best["box"], box) for box in boxes))
    assert np.median(hits) > 0.5


async def test_text_model_labels_held_out_sentences(server):
    texts, labels = text_model.sentences(seed=777_777, n=40)
    right = 0
    for text, label in zip(texts, labels, strict=True):
        status, body, _ = await server.predict(
            json.dumps({"text": text}).encode(), "/predict/roberta", content_type="application/json"
        )
        assert status == 200, body
        right += body["predictions"][0]["label"] == text_model.LABELS[label]
    assert right / len(texts) >= 0.85


async def test_a_text_sent_to_an_image_model_is_refused_clearly(server):
    status, body, _ = await server.predict(
        b"a lovely day", "/predict/resnet50", content_type="text/plain"
    )
    assert status == 415
    assert "takes an image" in body["error"]


def test_a_broken_config_exits_non_zero_naming_model_and_field(tmp_path, repository):
    broken = tmp_path / "models.yaml"
    broken.write_text(repository.read_text().replace("output: segmentation", "output: segmentaton"))
    result = subprocess.run(
        [sys.executable, "-m", "autodep.serve", "--config", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "model 'deeplabv3': output" in result.stderr


def test_a_model_file_that_is_not_torchscript_is_reported(tmp_path, repository):
    (tmp_path / "fake.pt").write_text("not a model")
    (tmp_path / "models.yaml").write_text("models: [{name: fake, path: fake.pt}]")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autodep.serve",
            "--config",
            str(tmp_path / "models.yaml"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "model 'fake'" in result.stderr and "could not start" in result.stderr
