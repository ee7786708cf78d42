"""A first start never waits for the optimizer: the file as given answers at once, the search
runs in the background and its choice is rolled out under load with no failed request;
`--optimize-wait` keeps the older behaviour (search, then serve).

Nothing here depends on how long the search takes: the first answer is checked to come from
the as-given version (which exists only while the search has not been rolled out), and the
rollout is awaited on the search's own task.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from autodep.codecs import Options, Payload
from autodep.optimize.candidates import AS_GIVEN
from autodep.optimize.search import _relay
from tests import models
from tests.support.images import image_bytes

pytestmark = pytest.mark.timeout(400)
BUDGET = 20.0  # seconds of search (and 0.2 s per plan phase)
CLIENTS = 4


@pytest.fixture(scope="module")
def color(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.save(models.ColorNet(), tmp_path_factory.mktemp("background") / "colors.pt")


def settings(cache_dir: Path, **more: object) -> dict[str, object]:
    return {
        "optimize": "auto",
        "optimize_budget": BUDGET,
        "optimize_int8": False,  # no calibration: the test's time goes to the rollout
        "cache_dir": cache_dir,
        **more,
    }


async def test_a_first_start_serves_at_once_and_rolls_the_search_out_with_no_failed_request(
    serve, color, tmp_path
):
    server = await serve(color, **settings(tmp_path / "cache"))
    service = server.service.service
    # The first answer comes from the file as given, before the search's choice serves.
    async with server.service.request("colors") as call:
        first = call.served
        answer = await call.predict(Payload.of(image_bytes("green"), "image/jpeg"), Options())
    assert answer["predictions"][0]["label"] == "green"
    assert first.variant.name == AS_GIVEN and first.plan is None
    assert first.variant.note is not None and "searches" in first.variant.note
    assert service.optimizer is not None

    # A small closed-loop load until the search's choice serves, and a little after it.
    rolled_out = asyncio.Event()
    codes: list[int] = []
    labels: list[str] = []

    async def client() -> None:
        after = 0
        while after < 5:
            status, body, _ = await server.predict(image_bytes("red"))
            codes.append(status)
            labels.append(body["predictions"][0]["label"] if status == 200 else body["error"])
            after += rolled_out.is_set()

    clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    await service.optimizer.wait()
    rolled_out.set()
    await asyncio.gather(*clients)
    assert set(codes) == {200} and set(labels) == {"red"}

    _, status = await server.get("/status")
    model = status["models"]["colors"]
    assert model["optimize"]["state"] == "done", model["optimize"]
    assert model["optimize"]["phase"] is None
    done, total = map(int, model["optimize"]["candidate"].split("/"))
    assert done == total > 0
    assert model["plan"]["source"] == "measured"
    assert model["variant"]["name"] == model["plan"]["variant"]
    assert model["variant"]["candidates"]  # the search's table
    versions = [v for v in status["repository"]["versions"] if v["name"] == "colors"]
    # The as-given load was replaced by the rollout's (the same version number), not failed.
    states = [v["state"] for v in versions]
    assert "failed" not in states and states.count("ready") == 1, versions
    serving = server.service.repository.get("colors")
    assert serving is not first and serving.plan is not None

    # The next start finds both in the cache: no search, the choice serves at once.
    again = await serve(color, **settings(tmp_path / "cache"))
    assert again.service.service.optimizer is None
    model = (await again.get("/status"))[1]["models"]["colors"]
    assert "optimize" not in model
    assert model["variant"]["from_cache"] and model["plan"]["source"] == "measured"


async def test_optimize_wait_searches_before_the_first_start_serves(serve, color, tmp_path):
    server = await serve(color, **settings(tmp_path / "cache", optimize_wait=True))
    assert server.service.service.optimizer is None
    model = (await server.get("/status"))[1]["models"]["colors"]
    assert "optimize" not in model
    assert not model["variant"]["from_cache"] and model["variant"]["candidates"]
    assert model["plan"]["source"] == "measured"
    status, body, _ = await server.predict(image_bytes("blue"))
    assert (status, body["predictions"][0]["label"]) == (200, "blue")


async def test_the_variant_search_reports_each_candidate_it_starts(capsys):
    stream = asyncio.StreamReader()
    stream.feed_data(b"[1/3] as-given ...\n[1/3] as-given: 10.0 img/s\nquantizing 10%\r")
    stream.feed_data(b"quantizing 100%\r[2/3] onnxruntime ...\n[3/3] openvino-f32-lat")
    stream.feed_data(b"ency ...\n")
    stream.feed_eof()
    heard: list[tuple[str, str]] = []
    await _relay(stream, lambda counted, name: heard.append((counted, name)))
    assert heard == [("1/3", "as-given"), ("2/3", "onnxruntime"), ("3/3", "openvino-f32-latency")]
    assert "quantizing 100%" in capsys.readouterr().err  # passed on


async def test_a_shutdown_during_the_search_leaves_no_process_behind(serve, color, tmp_path):
    """The search's child process and pools go with the server (the fixture's leak check)."""
    server = await serve(color, **settings(tmp_path / "cache"))
    optimizer = server.service.service.optimizer
    assert optimizer is not None
    await server.service.shutdown(grace_period=5)
    assert optimizer.progress["colors"].state in ("searching", "rolling out", "done")
