"""The optional bearer token, through a real server: every route but the health probes."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from autodep import Autodep
from autodep.errors import ConfigError
from tests.support.images import image_bytes
from tests.support.servers import listening

TOKEN = "s3cret-t0ken"
JPEG = {"Content-Type": "image/jpeg"}
GUARDED = [
    ("POST", "/predict"),
    ("POST", "/predict/colors"),
    ("GET", "/status"),
    ("GET", "/metrics"),
    ("GET", "/v2"),
    ("GET", "/v2/models/colors"),
    ("GET", "/v2/models/colors/ready"),
    ("POST", "/v2/models/colors/infer"),
    ("GET", "/no/such/route"),
]


async def call(session, method, url, token=None, scheme="Bearer"):
    headers = dict(JPEG)
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    async with session.request(method, url, data=image_bytes("red"), headers=headers) as response:
        return response.status, await response.json(), response.headers


async def test_every_route_but_health_needs_the_token(serve, color_model):
    server = await serve(color_model, auth_token=TOKEN)
    for method, path in GUARDED:
        for token, scheme in [(None, ""), ("wrong", "Bearer"), (TOKEN, "Basic"), ("", "Bearer")]:
            url = server.url + path
            status, body, headers = await call(server.session, method, url, token, scheme)
            assert status == 401, (method, path, token, scheme)
            assert "token" in body["error"]
            assert headers["WWW-Authenticate"] == "Bearer"
    for path in ("/v2/health/live", "/v2/health/ready"):
        status, _, _ = await call(server.session, "GET", server.url + path)
        assert status == 200, path


async def test_the_right_token_is_served(serve, color_model):
    server = await serve(color_model, auth_token=TOKEN)
    status, body, _ = await call(server.session, "POST", server.url + "/predict", TOKEN)
    assert (status, body["predictions"][0]["label"]) == (200, "red")
    status, body, _ = await call(server.session, "GET", server.url + "/status", TOKEN, "bearer")
    assert status == 200 and "colors" in body["models"]


async def test_the_token_can_come_from_a_file(serve, color_model, tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    server = await serve(color_model, auth_token_file=path)
    assert (await call(server.session, "GET", server.url + "/status"))[0] == 401
    assert (await call(server.session, "GET", server.url + "/status", TOKEN))[0] == 200


def test_an_empty_or_unreadable_token_is_a_config_error(color_model, tmp_path):
    (tmp_path / "empty").write_text("\n")
    for settings, words in [
        ({"auth_token": ""}, "must not be empty"),
        ({"auth_token_file": tmp_path / "empty"}, "is empty"),
        ({"auth_token_file": tmp_path / "none"}, "cannot read"),
        ({"auth_token": TOKEN, "auth_token_file": tmp_path / "empty"}, "not both"),
    ]:
        with pytest.raises(ConfigError, match=words) as caught:
            Autodep(color_model, **settings)
        assert TOKEN not in caught.value.message


async def test_the_token_guards_a_mounted_sub_application(color_model):
    async with Autodep(color_model, auth_token=TOKEN) as ad:
        parent = web.Application()
        parent.add_subapp("/ml", ad.app)
        async with listening(parent) as base:
            url = base + "/ml"
            async with aiohttp.ClientSession() as session:
                assert (await call(session, "POST", url + "/predict"))[0] == 401
                assert (await call(session, "POST", url + "/predict", TOKEN))[0] == 200
                assert (await call(session, "GET", url + "/v2/health/live"))[0] == 200
