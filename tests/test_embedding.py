"""Autodep inside another Python program."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from autodep import Autodep, BlockingAutodep
from tests.support.images import image_bytes
from tests.support.servers import listening


async def test_async_context_manager_has_workers_ready_on_enter(color_model):
    async with Autodep(color_model, max_workers=2) as ad:
        workers = ad.status()["models"]["colors"]["workers"]
        assert [w["state"] for w in workers] == ["idle"]
        result = await ad.predict(image_bytes("green"), top_n=1)
        assert result == {
            "model": "colors",
            "predictions": [
                {"index": 1, "label": "green", "score": result["predictions"][0]["score"]}
            ],
        }
    assert ad.status()["models"]["colors"]["workers"] == []


async def test_app_mounts_as_a_sub_application(color_model):
    async with Autodep(color_model) as ad:
        parent = web.Application()

        async def home(request: web.Request) -> web.Response:
            return web.Response(text="host app")

        parent.router.add_get("/", home)
        parent.add_subapp("/ml", ad.app)
        async with listening(parent) as base, aiohttp.ClientSession() as session:
            async with session.post(
                base + "/ml/predict",
                data=image_bytes("blue"),
                headers={"Content-Type": "image/jpeg"},
            ) as response:
                assert response.status == 200
                assert (await response.json())["predictions"][0]["label"] == "blue"
            async with session.get(base + "/") as response:
                assert await response.text() == "host app"


def test_blocking_helper_for_scripts(color_model):
    with BlockingAutodep(color_model, max_workers=1) as ad:
        assert ad.predict(image_bytes("red"))["predictions"][0]["label"] == "red"
        assert ad.status()["models"]["colors"]["workers"][0]["served"] == 1
