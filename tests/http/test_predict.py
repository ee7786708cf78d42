"""POST /predict through a real server and real worker processes."""

from __future__ import annotations

import io

import aiohttp
import pytest
from PIL import Image

from tests.support.images import image_bytes


@pytest.fixture
async def server(serve, color_model):
    return await serve(color_model, max_workers=2)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
async def test_raw_image_body_is_classified(server, fmt):
    status, body, _ = await server.predict(
        image_bytes("green", fmt), "/predict/colors", content_type=f"image/{fmt.lower()}"
    )
    assert status == 200
    assert body["model"] == "colors"
    assert body["predictions"][0]["label"] == "green"
    assert body["predictions"][0]["index"] == 1


async def test_response_shape_and_scores(server):
    status, body, _ = await server.predict(image_bytes("red"), "/predict?top_n=2")
    assert status == 200
    predictions = body["predictions"]
    assert len(predictions) == 2
    assert predictions[0]["label"] == "red"
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert 0 < scores[0] <= 1


async def test_top_n_is_capped_by_the_number_of_classes(server):
    status, body, _ = await server.predict(image_bytes("blue"), "/predict?top_n=50")
    assert status == 200
    assert len(body["predictions"]) == 3
    assert sum(p["score"] for p in body["predictions"]) == pytest.approx(1, abs=1e-4)


async def test_multipart_file_upload(server):
    form = aiohttp.FormData()
    form.add_field("image", image_bytes("blue"), filename="b.jpg", content_type="image/jpeg")
    async with server.session.post(server.url + "/predict", data=form) as response:
        assert response.status == 200
        assert (await response.json())["predictions"][0]["label"] == "blue"


async def test_octet_stream_is_sniffed(server):
    status, body, _ = await server.predict(
        image_bytes("red", "PNG"), content_type="application/octet-stream"
    )
    assert status == 200
    assert body["predictions"][0]["label"] == "red"


async def test_odd_image_modes_are_converted(server):
    """Grayscale, palette and EXIF-rotated images decode to RGB."""
    gray = io.BytesIO()
    Image.new("L", (30, 30), 200).save(gray, "PNG")
    palette = io.BytesIO()
    Image.new("RGB", (30, 30), (20, 20, 230)).convert("P").save(palette, "PNG")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (20, 230, 20)).save(rotated, "JPEG", exif=exif)
    for data, ctype in ((gray, "image/png"), (palette, "image/png"), (rotated, "image/jpeg")):
        status, body, _ = await server.predict(data.getvalue(), content_type=ctype)
        assert status == 200, body
    assert body["predictions"][0]["label"] == "green"


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "words"),
    [
        ("/predict", b"\xff\xd8 not a jpeg", "image/jpeg", 400, "could not decode"),
        ("/predict", b"", "image/jpeg", 400, "empty"),
        ("/predict", b"GIF89a", "image/gif", 415, "unsupported content type"),
        ("/predict", b"hello", "text/plain", 415, "takes an image"),
        ("/predict/nope", b"x", "image/jpeg", 404, "no model named 'nope'"),
        ("/predict?top_n=0", b"x", "image/jpeg", 400, "top_n"),
        ("/predict?top_n=abc", b"x", "image/jpeg", 400, "top_n"),
        ("/predict?threshold=2", b"x", "image/jpeg", 400, "threshold"),
        ("/predict", b"{bad json", "application/json", 400, "invalid JSON"),
        ("/nowhere", b"x", "image/jpeg", 404, "no such route"),
    ],
)
async def test_bad_requests_get_clear_json_errors(server, path, body, content_type, status, words):
    got, answer, _ = await server.predict(body, path, content_type=content_type)
    assert got == status
    assert words in answer["error"]
    # ... and the server keeps serving.
    ok, result, _ = await server.predict(image_bytes("red"))
    assert ok == 200 and result["predictions"][0]["label"] == "red"


async def test_body_over_the_limit_is_413(serve, color_model):
    server = await serve(color_model, max_body=10_000)
    status, body, _ = await server.predict(b"\xff" * 20_000)
    assert status == 413
    assert "limit" in body["error"]
    form = aiohttp.FormData()
    form.add_field("image", b"\xff" * 20_000, filename="big.jpg", content_type="image/jpeg")
    async with server.session.post(server.url + "/predict", data=form) as response:
        assert response.status == 413
        assert "error" in await response.json()
    status, body, _ = await server.predict(image_bytes("blue"))
    assert status == 200


async def test_predict_without_a_name_needs_a_single_model(serve, color_model, slow_model):
    server = await serve(color_model, slow_model)
    status, body, _ = await server.predict(image_bytes("red"))
    assert status == 404
    assert "several models" in body["error"]
    status, body, _ = await server.predict(image_bytes("red"), "/predict/slow")
    assert status == 200 and body["model"] == "slow"


async def test_labels_default_to_the_index_without_a_labels_file(serve, model_dir, color_model):
    bare = model_dir / "bare.pt"
    bare.write_bytes(color_model.read_bytes())
    server = await serve(bare)
    status, body, _ = await server.predict(image_bytes("blue"))
    assert status == 200
    assert body["predictions"][0] == {
        "index": 2,
        "label": "2",
        "score": body["predictions"][0]["score"],
    }
