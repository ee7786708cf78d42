"""The trust boundary of runtime loads: files only inside the repository, no pickled code.

A load request's entry comes from a client; the server is started by its operator
with a repository (`--config`) in a folder of its own. What the client names must
stay inside that folder, and a `.pt2` file's pickles never run unless the operator
said so.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from autodep.repository.retention import HISTORY
from tests import models
from tests.support.images import image_bytes


@pytest.fixture
def repo(tmp_path: Path, color_model: Path) -> Path:
    """A repository folder serving `colors`; a copy of the model also lies outside it."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(color_model, root / "colors.pt")
    shutil.copy(color_model.with_name("colors.labels.txt"), root / "colors.labels.txt")
    (root / "models.yaml").write_text(
        "models:\n  - name: colors\n    path: colors.pt\n    labels: colors.labels.txt\n"
    )
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(color_model, tmp_path / "elsewhere" / "m.pt")
    return root


async def start(serve, repo: Path, **settings):
    return await serve(
        repository=repo / "models.yaml", max_workers=1, model_control_mode="explicit", **settings
    )


async def load(server, name: str, entry: dict[str, object]) -> tuple[int, dict]:
    body = {"parameters": {"config": json.dumps(entry)}}
    url = f"{server.url}/v2/repository/models/{name}/load"
    async with server.session.post(url, json=body) as response:
        return response.status, await response.json()


async def test_a_load_names_files_only_inside_the_repository(serve, repo, tmp_path):
    server = await start(serve, repo)
    (repo / "passwd.txt").symlink_to("/etc/passwd")
    outside = [
        {"path": "colors.pt", "labels": "/etc/passwd"},
        {"path": "colors.pt", "labels": "/proc/self/environ"},
        {"path": "../elsewhere/m.pt"},
        {"path": str(tmp_path / "elsewhere" / "m.pt")},
        {"path": "colors.pt", "labels": "passwd.txt"},  # a symlink inside, to a file outside
        {"versions": {"1": "colors.pt", "2": "../elsewhere/m.pt"}},
        {"path": "colors.pt", "input": "text", "tokenizer": "/etc/passwd"},
        {"path": "colors.pt", "optimize": {"samples": "/etc"}},
    ]
    for entry in outside:
        status, answer = await load(server, "other", entry)
        assert status == 403, (entry, answer)
        assert "outside the repository directory" in answer["error"], answer
        assert str(tmp_path) not in answer["error"]  # where the repository is stays private

    # Missing, unreadable or not a regular file: one answer, which tells no file apart.
    os.mkfifo(repo / "fifo.pt")  # opening it for reading would block: it must not hang
    (repo / "folder.pt").mkdir()
    unreadable = ["missing.pt", "fifo.pt", "folder.pt"]
    if os.geteuid() != 0:  # root reads any file
        (repo / "secret.pt").write_bytes(b"x")
        (repo / "secret.pt").chmod(0)
        unreadable.append("secret.pt")
    answers = set()
    for name in unreadable:
        status, answer = await load(server, "other", {"path": name})
        assert status == 400, (name, answer)
        answers.add(answer["error"].replace(name, "NAME"))
    assert answers == {"path: no readable file 'NAME' in the repository directory"}

    # Refused loads leave nothing behind; a load inside the folder works.
    status, index = await _index(server)
    assert {entry["name"] for entry in index} == {"colors"}
    status, answer = await load(
        server, "other", {"path": "colors.pt", "labels": "colors.labels.txt"}
    )
    assert status == 200, answer
    status, body, _ = await server.predict(image_bytes("blue"), "/predict/other")
    assert status == 200 and body["predictions"][0]["label"] == "blue"


async def test_pickles_in_a_pt2_never_run_unless_the_operator_trusts_them(serve, repo, tmp_path):
    marker = tmp_path / "pickle-ran"
    program = models.exported(repo / "scaled.pt2")
    models.poisoned(program, repo / "hostile.pt2", marker)
    server = await start(serve, repo, max_total_workers=3)  # colors, scaled, hostile
    # A program of plain tensors loads under weights_only semantics.
    status, answer = await load(
        server, "scaled", {"path": "scaled.pt2", "labels": "scaled.labels.txt"}
    )
    assert status == 200, answer
    status, body, _ = await server.predict(image_bytes("green"), "/predict/scaled")
    assert status == 200 and body["predictions"][0]["label"] == "green"

    status, answer = await load(server, "hostile", {"path": "hostile.pt2"})
    assert status == 400 and "--trust-pt2-pickles" in answer["error"], answer
    assert not marker.exists(), "a pickle in the .pt2 ran"

    # The operator's opt-in reaches the workers: the same file's pickles then run.
    trusting = await start(serve, repo, trust_pt2_pickles=True, max_total_workers=3)
    await load(trusting, "hostile", {"path": "hostile.pt2"})
    assert marker.exists()


async def test_failed_loads_are_forgotten_after_a_bounded_history(serve, repo, broken_model):
    shutil.copy(broken_model, repo / "broken.pt")
    server = await start(serve, repo)
    names = [f"bad{n}" for n in range(HISTORY + 7)]
    for name in names:
        status, answer = await load(server, name, {"path": "broken.pt"})
        assert status == 400 and "failed to load" in answer["error"], answer
    status, index = await _index(server)
    assert {entry["name"] for entry in index} == {"colors", *names[-HISTORY:]}
    async with server.session.get(server.url + "/metrics") as response:
        metrics = await response.text()
    forgotten = [name for name in names[:-HISTORY] if f'model="{name}"' in metrics]
    assert forgotten == [], "metric series of forgotten models remain"
    assert f'model="{names[-1]}"' in metrics  # the recent failures are still shown
    status, _, _ = await server.predict(image_bytes("red"), "/predict/colors")
    assert status == 200


async def _index(server) -> tuple[int, list[dict[str, str]]]:
    async with server.session.post(server.url + "/v2/repository/index") as response:
        return response.status, await response.json()
