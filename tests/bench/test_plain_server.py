"""bench/plain_server.py, the benchmarks' hand-written baseline: it answers as /predict does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.server import ServerProcess
from tests.support.images import image_bytes


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/predict", data=body, headers={"Content-Type": "image/jpeg"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("runtime", ["as-given", "openvino"])
def test_classifies_batches_and_rejects_junk(color_model, tmp_path, runtime):
    """The file as given, and the expert baseline: converted to OpenVINO."""
    flags = ["--model", str(color_model), "--max-batch-size", "4", "--runtime", runtime]
    with ServerProcess("plain", flags, tmp_path / "plain.log", module="bench.plain_server") as s:
        url = s.url()
        colours = ["red", "green", "blue"] * 4
        with ThreadPoolExecutor(len(colours)) as clients:
            answers = list(clients.map(lambda c: post(url, image_bytes(c)), colours))
        assert [status for status, _ in answers] == [200] * len(colours)
        top = [answer["predictions"][0]["index"] for _, answer in answers]
        assert top == [["red", "green", "blue"].index(c) for c in colours]
        assert len(answers[0][1]["predictions"]) == 3  # top-5 of three classes
        status, answer = post(url, b"not an image")
        assert status == 400 and "cannot decode" in answer["error"]
        ran = "openvino" if runtime == "openvino" else "torch"
        assert any(f"running {color_model.name} ({ran}" in line for line in s.lines), s.lines
    assert s.process.returncode == 0 and s.orphans == []
