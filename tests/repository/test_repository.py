"""Models at runtime: load, unload, reload under load, versions, poll mode, tritonclient.

Two models tell the versions apart: `colors` (v1) answers "red" for a red
image; `reversed` (v2) has its classes reversed and labels of its own, so it
answers "v2-blue". A response mixing one version's outputs with the other's
labels would read "blue" or "v2-red".
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct

import aiohttp
import numpy as np
import psutil
import pytest
import tritonclient.http as triton
from aiohttp import web
from tritonclient.utils import InferenceServerException

from autodep import Autodep
from tests import models
from tests.support.images import image_bytes
from tests.support.servers import Server, listening
from tests.support.triton_client import client, in_thread

V2_LABELS = ("v2-red", "v2-green", "v2-blue")
DEADLINE = 60.0  # seconds: generous bound for any state change on a busy machine
RED = image_bytes("red")


@pytest.fixture(scope="session")
def reversed_model(model_dir):
    return models.save(models.ReversedColorNet(), model_dir / "reversed.pt", labels=V2_LABELS)


@pytest.fixture(autouse=True)
def in_model_dir(model_dir, monkeypatch):
    """A load request names files inside the repository directory: without --config, the
    server's working directory. These servers start in the folder of the test models."""
    monkeypatch.chdir(model_dir)


def v2_entry(reversed_model, **fields):
    return json.dumps(
        {
            "path": str(reversed_model),
            "labels": str(reversed_model.with_name("reversed.labels.txt")),
            **fields,
        }
    )


async def post(server, path, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    async with server.session.post(server.url + path, data=data) as response:
        return response.status, await response.json()


async def load(server, name, config=None):
    body = {} if config is None else {"parameters": {"config": config}}
    return await post(server, f"/v2/repository/models/{name}/load", body)


async def label(server, name="colors"):
    status, body, _ = await server.predict(RED, f"/predict/{name}")
    return status, body["predictions"][0]["label"] if status == 200 else body["error"]


def entries(index, name):
    return [(e["version"], e["state"], e["reason"]) for e in index if e["name"] == name]


async def test_load_a_new_model_then_unload_it(serve, color_model, reversed_model):
    server = await serve(color_model, max_workers=1, model_control_mode="explicit")
    assert (await label(server, "other"))[0] == 404
    status, answer = await load(server, "other", v2_entry(reversed_model))
    assert status == 200, answer
    assert answer == [{"name": "other", "version": "1", "state": "READY", "reason": ""}]
    assert await label(server, "other") == (200, "v2-blue")
    assert await label(server) == (200, "red")  # the first model is untouched
    pids = [w["pid"] for w in (await server.get("/status"))[1]["models"]["other"]["workers"]]
    assert pids

    status, answer = await post(server, "/v2/repository/models/other/unload")
    assert status == 200, answer
    assert [(e["state"], e["reason"]) for e in answer] == [
        ("UNAVAILABLE", "unloaded; workers stopped")
    ]
    status, error = await label(server, "other")
    assert status == 404 and "other" in error
    assert not any(psutil.pid_exists(pid) for pid in pids)  # its workers are gone
    status, body = await server.get("/status")
    assert "other" not in body["models"]
    states = [(v["name"], v["state"]) for v in body["repository"]["versions"]]
    assert ("other", "unloaded") in states and ("colors", "ready") in states
    status, answer = await post(server, "/v2/repository/models/other/unload")
    assert status == 404 and "not loaded" in answer["error"]


async def test_reload_with_a_new_file_while_requests_flow(serve, color_model, reversed_model):
    server = await serve(
        color_model,
        max_workers=2,
        max_total_workers=2,
        max_batch_size=4,
        model_control_mode="explicit",
    )
    answers: list[list[tuple[int, str]]] = [[] for _ in range(6)]
    flowing = asyncio.Event()

    async def keep_asking(log):
        # Until this client has been answered by the new version.
        while not log or log[-1][1] != "v2-blue":
            log.append(await label(server))
            if all(answers):
                flowing.set()

    clients = [asyncio.create_task(keep_asking(log)) for log in answers]
    await asyncio.wait_for(flowing.wait(), DEADLINE)
    status, answer = await load(server, "colors", v2_entry(reversed_model))
    assert status == 200, answer
    await asyncio.wait_for(asyncio.gather(*clients), DEADLINE)
    repository = server.service.repository
    await repository.wait_until(lambda: repository.transitions["colors", "unloaded"] == 1, DEADLINE)

    for log in answers:
        assert {status for status, _ in log} == {200}, log
        labels = [text for _, text in log]
        assert set(labels) <= {"red", "v2-blue"}, (
            labels
        )  # never one version's labels on the other's outputs
        first_new = labels.index("v2-blue")
        assert labels[first_new:] == ["v2-blue"] * (len(labels) - first_new)  # no way back
    index = (await post(server, "/v2/repository/index"))[1]
    assert entries(index, "colors") == [("1", "READY", "")]
    status, body = await server.get("/status")
    assert len(body["models"]["colors"]["workers"]) <= 2


async def test_a_broken_new_file_leaves_the_old_version_serving(serve, color_model, broken_model):
    server = await serve(color_model, max_workers=1, model_control_mode="explicit")
    status, answer = await load(server, "colors", json.dumps({"path": str(broken_model)}))
    assert status == 400
    assert "failed to load" in answer["error"] and "serving: version 1" in answer["error"]
    assert await label(server) == (200, "red")
    index = (await post(server, "/v2/repository/index"))[1]
    (ready, failed) = entries(index, "colors")
    assert ready == ("1", "READY", "")
    assert failed[:2] == ("1", "UNAVAILABLE") and "PytorchStreamReader failed" in failed[2]
    ready_only = (await post(server, "/v2/repository/index", {"ready": True}))[1]
    assert entries(ready_only, "colors") == [("1", "READY", "")]
    status, answer = await load(server, "colors", json.dumps({"path": "missing.pt"}))
    assert status == 400 and "path: no readable file 'missing.pt'" in answer["error"]


async def test_versions_by_number_and_the_newest_by_default(
    serve, tmp_path, color_model, reversed_model
):
    for model in (color_model, color_model.with_name("colors.labels.txt"), reversed_model):
        shutil.copy(model, tmp_path)  # the repository's folder: loads name files inside it
    repository = tmp_path / "models.yaml"
    repository.write_text(
        """
models:
  - name: colors
    versions: {1: colors.pt, 2: reversed.pt}
    version_policy: {specific: [1, 2]}
    labels: colors.labels.txt
    workers: {max: 1}
"""
    )
    # 3: version 2 reloads beside the two serving (a load never exceeds the budget)
    server = await serve(repository=repository, max_total_workers=3, model_control_mode="explicit")
    c = client(server)
    for version, expected in (("1", "red"), ("2", "blue"), ("", "blue")):
        assert await in_thread(infer, c, "colors", version) == expected, version
    assert await label(server) == (200, "blue")  # /predict: the newest ready version
    with pytest.raises(InferenceServerException, match="no ready version 3"):
        await in_thread(infer, c, "colors", "3")
    index = await in_thread(c.get_model_repository_index)
    assert entries(index, "colors") == [("1", "READY", ""), ("2", "READY", "")]

    # A new policy: version 1 leaves, version 2 is loaded again.
    policy = {"versions": {"1": "colors.pt", "2": "reversed.pt"}}
    config = json.dumps({**policy, "version_policy": {"latest": 1}})
    status, answer = await load(server, "colors", config)
    assert status == 200, answer
    state = server.service.repository
    await state.wait_until(lambda: state.transitions["colors", "unloaded"] == 2, DEADLINE)
    index = (await post(server, "/v2/repository/index"))[1]
    assert entries(index, "colors") == [
        ("1", "UNAVAILABLE", "unloaded; workers stopped"),
        ("2", "READY", ""),
    ]
    with pytest.raises(InferenceServerException, match="no ready version 1"):
        await in_thread(infer, c, "colors", "1")


async def test_poll_mode_picks_up_a_changed_file(
    serve, tmp_path, color_model, reversed_model, broken_model
):
    model = tmp_path / "watched.pt"
    shutil.copy(color_model, model)
    repository = tmp_path / "models.yaml"
    repository.write_text(
        f"models: [{{name: colors, path: {model}, labels: "
        f"{color_model.with_name('colors.labels.txt')}, workers: {{max: 1}}}}]\n"
    )
    server = await serve(repository=repository, model_control_mode="poll", repository_poll_s=0.05)
    assert await label(server) == (200, "red")
    status, answer = await load(server, "colors")
    assert status == 400 and "poll" in answer["error"]
    state = server.service.repository

    replace(reversed_model, model)
    await state.wait_until(lambda: state.transitions["colors", "unloaded"] == 1, DEADLINE)
    assert await label(server) == (200, "blue")

    replace(broken_model, model)
    await state.wait_until(lambda: state.transitions["colors", "failed"] == 1, DEADLINE)
    assert await label(server) == (200, "blue")  # the broken file never served
    index = (await post(server, "/v2/repository/index"))[1]
    assert [s for _, s, _ in entries(index, "colors")] == ["READY", "UNAVAILABLE"]


async def test_poll_mode_watches_model_files_given_without_a_yaml(
    serve, tmp_path, color_model, reversed_model
):
    model = tmp_path / "colors.pt"
    shutil.copy(color_model, model)
    shutil.copy(color_model.with_name("colors.labels.txt"), tmp_path / "colors.labels.txt")
    server = await serve(model, max_workers=1, model_control_mode="poll", repository_poll_s=0.05)
    assert await label(server) == (200, "red")
    state = server.service.repository
    replace(reversed_model, model)
    await state.wait_until(lambda: state.transitions["colors", "unloaded"] == 1, DEADLINE)
    assert await label(server) == (200, "blue")


async def test_tritonclients_repository_calls(serve, color_model, reversed_model, broken_model):
    server = await serve(color_model, max_workers=1, model_control_mode="explicit")
    c = client(server)
    index = await in_thread(c.get_model_repository_index)
    assert index == [{"name": "colors", "version": "1", "state": "READY", "reason": ""}]
    await in_thread(c.load_model, "other", config=v2_entry(reversed_model))
    assert await in_thread(c.is_model_ready, "other")
    assert await in_thread(infer, c, "other", "1") == "v2-blue"
    await in_thread(c.unload_model, "other")
    assert not await in_thread(c.is_model_ready, "other")
    index = await in_thread(c.get_model_repository_index)
    assert ("other", "UNAVAILABLE") in [(e["name"], e["state"]) for e in index]
    with pytest.raises(InferenceServerException, match="failed to load"):
        await in_thread(c.load_model, "colors", config=json.dumps({"path": str(broken_model)}))


async def test_none_mode_refuses_load_and_unload(serve, color_model):
    server = await serve(color_model, max_workers=1)
    for action in ("load", "unload"):
        status, answer = await post(server, f"/v2/repository/models/colors/{action}")
        assert status == 400
        assert "--model-control-mode explicit" in answer["error"]
    status, index = await post(server, "/v2/repository/index")
    assert status == 200 and entries(index, "colors") == [("1", "READY", "")]
    assert await label(server) == (200, "red")


async def test_bad_load_requests_are_clear_400s(serve, color_model):
    server = await serve(color_model, max_workers=1, model_control_mode="explicit")
    cases = [
        ({"parameters": {"config": "{not json"}}, "not valid JSON"),
        ({"parameters": {"config": json.dumps({"path": 3, "workers": {"max": 0}})}}, "workers.max"),
        ({"parameters": {"config": json.dumps({"name": "x", "path": "a.pt"})}}, "names model 'x'"),
        ({"parameters": {"file:1/model.pt": "AAAA"}}, "not supported"),
        ({"parameters": "config"}, "must be an object"),
    ]
    for body, words in cases:
        status, answer = await post(server, "/v2/repository/models/colors/load", body)
        assert status == 400, answer
        assert words in answer["error"], answer
    status, answer = await load(server, "nothing")
    assert status == 404 and "nothing" in answer["error"]


# -- helpers -----------------------------------------------------------------


def red_input():
    tensor = triton.InferInput("input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([RED], dtype=np.object_), binary_data=True)
    return tensor


def infer(c, name, version):
    """One red image through the V2 protocol; the top label (classification extension)."""
    output = triton.InferRequestedOutput("probabilities", binary_data=True, class_count=1)
    result = c.infer(name, [red_input()], outputs=[output], model_version=version)
    return result.as_numpy("probabilities")[0][0].decode().split(":")[2]


def replace(source, target):
    """Put a new file in place at once, as a deployment would (write aside, then rename)."""
    aside = target.with_suffix(".incoming")
    shutil.copy(source, aside)
    aside.replace(target)


async def test_mounted_under_a_prefix_a_reload_waits_for_a_body_still_arriving(
    color_model, reversed_model
):
    """Mounted as a sub-application, a request is still held and counted: no guarantee
    depends on the path (the V2 request below found the old version before its body came)."""
    image = struct.pack("<I", len(RED)) + RED
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(image)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
        }
    ).encode()
    rest_may_come = asyncio.Event()

    async def body():
        yield header
        await rest_may_come.wait()
        yield image

    async with Autodep(color_model, max_workers=1, model_control_mode="explicit") as ad:
        parent = web.Application()
        parent.add_subapp("/ml", ad.app)
        async with listening(parent) as base:
            server = Server(ad, base + "/ml", aiohttp.ClientSession())
            async with server.session:
                old = ad.model("colors")
                asking = asyncio.create_task(
                    server.session.post(
                        server.url + "/v2/models/colors/infer",
                        data=body(),
                        headers={"Inference-Header-Content-Length": str(len(header))},
                    )
                )
                deadline = asyncio.get_running_loop().time() + DEADLINE
                while old.in_flight.count == 0:  # the handler has the version, not the body
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.01)
                status, answer = await load(server, "colors", v2_entry(reversed_model))
                assert status == 200, answer
                assert ad.model("colors") is not old
                rest_may_come.set()
                response = await asyncio.wait_for(asking, DEADLINE)
                assert response.status == 200, await response.text()
                (top,) = (await response.json())["outputs"][0]["data"]
                assert top.split(":")[2] == "red"  # wholly on the version it found
                await label(server)  # a /predict request, answered by the new version
                async with server.session.get(server.url + "/metrics") as metrics:
                    text = await metrics.text()
                assert 'autodep_requests_total{code="200",model="colors"} 2.0' in text
                repository = ad.repository
                await repository.wait_until(
                    lambda: repository.transitions["colors", "unloaded"] == 1, DEADLINE
                )


async def test_a_request_held_by_one_model_does_not_hold_anothers_rollout(
    serve, color_model, reversed_model, gated
):
    """In-flight tracking is per model version: a slow request (here held inside the gated
    model) never keeps a reloaded version of another model draining."""
    gated_path, gate = gated
    server = await serve(
        color_model,
        gated_path,
        max_workers=1,
        max_total_workers=3,
        model_control_mode="explicit",
        grace_period=2 * DEADLINE,  # a version that waited for the held request would not go
    )
    held = asyncio.create_task(label(server, "gated"))
    await gate.wait_entered(1)
    status, answer = await load(server, "colors", v2_entry(reversed_model))
    assert status == 200, answer
    repository = server.service.repository
    # The old colors version is stopped while the gated request is still held.
    await repository.wait_until(lambda: repository.transitions["colors", "unloaded"] == 1, DEADLINE)
    assert not held.done()
    gate.open()
    assert await asyncio.wait_for(held, DEADLINE) == (200, "red")
