"""Each model kind end to end through /predict, with small models whose answers are known."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from autodep import Autodep
from tests import models as test_models


def write_repository(directory: Path, entries: list[dict]) -> Path:
    import yaml

    path = directory / "models.yaml"
    path.write_text(yaml.safe_dump({"models": entries}))
    return path


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("repo")
    test_models.save(test_models.ColorSegmenter(), d / "seg.pt", None)
    (d / "seg.labels.txt").write_text("background\nred\ngreen\nblue\n")
    test_models.save(test_models.CornerDetector(), d / "det.pt", None)
    (d / "det.labels.txt").write_text("background\nthing\nhalf-thing\n")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.train_from_iterator(
        ["good bad movie film good day bad day"] * 20,
        trainers.BpeTrainer(special_tokens=["<s>", "<pad>", "</s>", "<unk>"], vocab_size=300),
    )
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer.save(str(d / "text.tokenizer.json"))
    good, bad = (tokenizer.token_to_id(w) for w in ("Ġgood", "Ġbad"))
    test_models.save(test_models.KeywordClassifier(good, bad), d / "text.pt", None)
    (d / "text.labels.txt").write_text("negative\npositive\n")
    test_models.save(test_models.Doubler(), d / "double.pt", None)
    return write_repository(
        d,
        [
            {
                "name": "seg",
                "path": "seg.pt",
                "output": "segmentation",
                "labels": "seg.labels.txt",
                "preprocess": {"resize": 32},
            },
            {
                "name": "det",
                "path": "det.pt",
                "output": "detection",
                "labels": "det.labels.txt",
                "preprocess": {"resize": None, "mean": [0, 0, 0], "std": [1, 1, 1]},
            },
            {
                "name": "text",
                "path": "text.pt",
                "input": "text",
                "labels": "text.labels.txt",
                "tokenizer": "text.tokenizer.json",
                "max_length": 16,
            },
            {
                "name": "double",
                "path": "double.pt",
                "input": "tensor",
                "output": "raw",
                "input_shape": [2, 3],
            },
        ],
    )


@pytest.fixture
async def server(serve, repository):
    service = Autodep(repository=repository, max_workers=1)
    return await serve(config=service.config)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def test_segmentation_counts_pixels_and_returns_the_mask_at_input_size(server):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((230, 20, 20), (0, 0, 10, 20))  # a red quarter
    image.paste((20, 20, 230), (20, 0, 40, 20))  # a blue half
    status, body, _ = await server.predict(png(image), "/predict/seg", content_type="image/png")
    assert status == 200, body
    classes = body["classes"]
    assert set(classes) == {"background", "red", "blue"}
    assert sum(classes.values()) == 40 * 20
    assert classes["blue"] == pytest.approx(400, abs=40)
    assert classes["red"] == pytest.approx(200, abs=40)
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
    assert mask.shape == (20, 40)
    assert mask[10, 35] == 3 and mask[10, 2] == 1 and mask[10, 15] == 0


async def test_detection_boxes_are_in_input_pixels_and_filtered_by_threshold(server):
    image = Image.new("RGB", (120, 80), (0, 0, 0))
    image.paste((255, 255, 255), (30, 20, 90, 60))
    status, body, _ = await server.predict(png(image), "/predict/det", content_type="image/png")
    assert status == 200, body
    (detection,) = body["detections"]
    assert detection["label"] == "thing"
    assert detection["box"] == [30, 20, 90, 60]
    assert detection["score"] == pytest.approx(0.9)
    status, body, _ = await server.predict(
        png(image), "/predict/det?threshold=0.1", content_type="image/png"
    )
    assert [d["label"] for d in body["detections"]] == ["thing", "half-thing"]


@pytest.mark.parametrize(
    ("text", "label"),
    [("a good good day", "positive"), ("bad film, bad day", "negative")],
)
async def test_text_as_plain_text_and_as_json(server, text, label):
    status, body, _ = await server.predict(
        text.encode(), "/predict/text", content_type="text/plain"
    )
    assert status == 200, body
    assert body["predictions"][0]["label"] == label
    status, body, _ = await server.predict(
        json.dumps({"text": text}).encode(), "/predict/text", content_type="application/json"
    )
    assert body["predictions"][0]["label"] == label


async def test_raw_tensor_in_and_out(server):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    buffer = io.BytesIO()
    np.save(buffer, array)
    status, body, _ = await server.predict(
        buffer.getvalue(), "/predict/double", content_type="application/x-npy"
    )
    assert status == 200, body
    assert body["output"] == {"shape": [2, 3], "dtype": "float32", "data": [0, 2, 4, 6, 8, 10]}
    np.save(buffer := io.BytesIO(), np.zeros((3, 3), np.float32))
    status, body, _ = await server.predict(
        buffer.getvalue(), "/predict/double", content_type="application/x-npy"
    )
    assert status == 400 and "shape" in body["error"]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "words"),
    [
        ("/predict/text", b"\x89PNG...", "image/png", 415, "takes text"),
        ("/predict/seg", b"some words", "text/plain", 415, "takes an image"),
        ("/predict/text", b"   ", "text/plain", 400, "empty"),
        ("/predict/double", b"not npy", "application/x-npy", 400, "not a valid .npy"),
        ("/predict/text", b'{"txt": 1}', "application/json", 400, '{"text"'),
    ],
)
async def test_wrong_input_for_the_kind_is_a_clear_error(
    server, path, body, content_type, status, words
):
    got, answer, _ = await server.predict(body, path, content_type=content_type)
    assert got == status
    assert words in answer["error"]


async def test_a_torch_export_program_is_served_like_torchscript(serve, tmp_path):
    import torch

    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        test_models.ColorNet(), (torch.zeros(2, 3, 224, 224),), dynamic_shapes={"x": {0: batch}}
    )
    path = tmp_path / "exported.pt2"
    torch.export.save(program, str(path))
    (tmp_path / "exported.labels.txt").write_text("red\ngreen\nblue\n")
    server = await serve(path)
    image = Image.new("RGB", (30, 30), (20, 230, 20))
    status, body, _ = await server.predict(png(image), content_type="image/png")
    assert status == 200, body
    assert body["predictions"][0]["label"] == "green"
