"""Property: no load entry, however malformed or hostile, gets a 5xx or reaches outside.

Hypothesis generates model entries for `POST /v2/repository/models/{m}/load`
against ONE server in explicit model control mode whose repository folder holds
a symlink to /etc/passwd, a FIFO, a folder and a broken model, with a model file
just outside it. Every answer is a JSON 4xx, or a load all of whose files lie
inside the repository; no answer carries /etc/passwd or the environment.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from autodep import Autodep
from tests.support.fuzzing import EXAMPLES, Fuzzed, json_values
from tests.support.leaks import checked_for_leftovers
from tests.support.servers import start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """The module's one server outlives each test: `loading` checks for leftovers at its end."""
    yield


class Loading(Fuzzed):
    """A server in explicit model control mode whose repository is `root`."""

    def __init__(self, url: str, session: aiohttp.ClientSession, root: Path) -> None:
        super().__init__(url, session)
        self.root = root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loading(
    color_model: Any, broken_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Loading]:
    top = tmp_path_factory.mktemp("fuzz-loads")
    root = top / "repo"
    root.mkdir()
    shutil.copy(color_model, root / "colors.pt")
    shutil.copy(color_model.with_name("colors.labels.txt"), root / "colors.labels.txt")
    shutil.copy(broken_model, root / "broken.pt")
    (root / "models.yaml").write_text("models:\n  - name: colors\n    path: colors.pt\n")
    (root / "passwd-link").symlink_to("/etc/passwd")
    (root / "sub").mkdir()
    os.mkfifo(root / "fifo")
    shutil.copy(color_model, top / "outside.pt")
    with checked_for_leftovers():
        service = Autodep(
            repository=root / "models.yaml", max_workers=1, model_control_mode="explicit"
        )
        runner, url = await start_server(service)
        try:
            async with aiohttp.ClientSession() as session:
                yield Loading(url, session, root)
        finally:
            await service.shutdown(grace_period=5)
            await runner.cleanup()


# Paths a hostile or careless client may name; only broken.pt and the labels are loadable
# files inside the repository (a load of them fails in its worker, or starts one).
NAMED_PATHS = st.sampled_from(
    [
        "/etc/passwd",
        "/proc/self/environ",
        "//etc/passwd",
        "../outside.pt",
        "sub/../../outside.pt",
        "passwd-link",
        "missing.pt",
        "sub",
        "fifo",
        "",
        ".",
        "..",
        "/",
        "~",
        "a\x00b",
        "colors.labels.txt",
        "broken.pt",
    ]
)
load_paths = st.one_of(NAMED_PATHS, NAMED_PATHS, NAMED_PATHS, st.text(max_size=12))
load_entries = st.fixed_dictionaries(
    {"path": load_paths},
    optional={
        "versions": st.dictionaries(st.integers(1, 3).map(str), load_paths, max_size=2),
        "labels": load_paths,
        "tokenizer": load_paths,
        "optimize": st.fixed_dictionaries({"samples": load_paths}),
    },
)
PATH_FIELDS = ("path", "labels", "tokenizer")


def _named_paths(entry: dict[str, Any]) -> list[str]:
    paths = [entry[f] for f in PATH_FIELDS if isinstance(entry.get(f), str)]
    if isinstance(entry.get("versions"), dict):
        paths += [p for p in entry["versions"].values() if isinstance(p, str)]
    if isinstance(entry.get("optimize"), dict) and "samples" in entry["optimize"]:
        paths.append(entry["optimize"]["samples"])
    return paths


@EXAMPLES
@given(entry=st.one_of(load_entries, load_entries, load_entries, json_values))
async def test_load_entries(loading: Loading, entry: Any) -> None:
    """Any entry: a 4xx or a load whose every file is inside the repository."""
    body = {"parameters": {"config": json.dumps(entry)}}
    url = loading.url + "/v2/repository/models/fz/load"
    async with loading.session.post(url, json=body) as response:
        text = await response.text()
        status = await loading.check(response)
    assert "root:x:0" not in text and os.environ["PATH"] not in text
    if status == 200:
        for named in _named_paths(entry):
            real = os.path.realpath(loading.root / named)
            assert Path(real).is_relative_to(loading.root), named
