"""The optimizer's cache trusts only entries this server's user wrote, inside the cache.

A cache entry names the files the workers load. Anyone who could write the cache
directory (0755, no owner check, artifact paths taken as given) could plant an entry
whose artifact is any file on the host, and the server served it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autodep.optimize import cache
from autodep.optimize.candidates import AS_GIVEN
from autodep.optimize.result import Result, Row

KEY = "0123456789abcdef01234567"


def store(entry: Path, artifact: str) -> None:
    """A search result choosing candidate `x`, whose artifact is `artifact`."""
    rows = (Row(AS_GIVEN, artifact="/models/m.pt"), Row("x", artifact=artifact))
    Result(KEY, "x", rows, max_batch_size=8, threads=1, machine="cpu", search_s=1.0).save(
        entry / cache.RESULT
    )


@pytest.fixture
def entry(tmp_path: Path) -> Path:
    entry = tmp_path / "cache" / KEY
    cache.make_entry(entry)
    (entry / "x").mkdir()
    (entry / "x" / "model.xml").write_text("<net/>")
    return entry


def test_cache_directories_are_private(entry):
    for path in (entry.parent, entry):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_an_entry_is_trusted_only_with_its_artifacts_inside_it(entry, tmp_path):
    store(entry, "x/model.xml")
    assert cache.lookup(entry.parent, KEY) is not None  # the server's own entry
    outside = tmp_path / "elsewhere.pt"
    outside.write_text("not the search's")
    (entry / "x" / "link.xml").symlink_to(outside)
    for artifact in (str(outside), "../../elsewhere.pt", "x/link.xml"):
        store(entry, artifact)
        assert cache.lookup(entry.parent, KEY) is None, artifact


def test_an_entry_others_could_write_is_ignored(entry):
    store(entry, "x/model.xml")
    entry.chmod(0o777)
    assert cache.lookup(entry.parent, KEY) is None
    entry.chmod(0o700)
    (entry / cache.RESULT).chmod(0o666)
    assert cache.lookup(entry.parent, KEY) is None
    (entry / cache.RESULT).chmod(0o600)
    assert cache.lookup(entry.parent, KEY) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_owned_by_another_user_is_ignored(entry):
    store(entry, "x/model.xml")
    os.chown(entry / cache.RESULT, 4242, 4242)
    assert cache.lookup(entry.parent, KEY) is None
    os.chown(entry / cache.RESULT, os.geteuid(), os.getegid())
    os.chown(entry / "x" / "model.xml", 4242, 4242)
    assert cache.lookup(entry.parent, KEY) is None
