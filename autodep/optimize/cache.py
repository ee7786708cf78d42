"""Where search results live, and the key that says when one still holds.

The key covers everything that could change a search's outcome: the model file's bytes, the
CPU (model name and flags), the library versions, the input shapes, the candidates and their
options, the gate's tolerance and samples, the batch size and threads measured. A new CPU or
library thus runs a new search instead of trusting an old one. Entries are directories
``<root>/<key>/`` holding ``result.json`` and each candidate's artifacts.

An entry says which files the workers load, so it is trusted only if this server's user
wrote it: the directories are created 0700, and an entry is ignored (searched again) unless
the cache directory, the entry and its files are owned by this user and writable by no one
else, and every artifact it names lies inside the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autodep.optimize.candidates import AS_GIVEN, Candidate
from autodep.optimize.cpu import Machine
from autodep.optimize.result import Result

RESULT = "result.json"


def root(configured: Path | None = None) -> Path:
    """The cache directory: as configured (--cache-dir, AUTODEP_CACHE_DIR), else the default."""
    return configured if configured is not None else Path.home() / ".cache" / "autodep"


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def directory_digest(path: Path | None) -> str | None:
    """The samples folder's names and bytes, so that changed samples re-run the gate."""
    if path is None:
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file_digest(file).encode())
    return digest.hexdigest()


def key(
    *,
    model_digest: str,
    machine: Machine,
    example: Sequence[Any],
    candidates: Sequence[Candidate],
    settings: dict[str, Any],
) -> str:
    """The cache key: a digest of all of it (see the module docstring)."""
    document = {
        "model": model_digest,
        "machine": asdict(machine),
        "example": example,
        "candidates": [c.describe() for c in candidates],
        "settings": settings,
    }
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def make_entry(entry: Path) -> None:
    """Create an entry's directory (and the cache directory) readable by this user only."""
    entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    entry.mkdir(mode=0o700, exist_ok=True)


def lookup(root_dir: Path, entry_key: str) -> Result | None:
    """The stored result of a search with this key, if there is one this server trusts."""
    entry = root_dir / entry_key
    path = entry / RESULT
    try:
        if not (_ours(root_dir, follow=True) and _ours(entry) and _ours(path)):
            return None
        result = Result.load(path)
        # The model as given names the model file; every other artifact is the search's.
        artifacts = [r.artifact for r in result.rows if r.artifact and r.name != AS_GIVEN]
        if not all(_inside(entry, artifact) for artifact in artifacts):
            return None
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return result


def _ours(path: Path, follow: bool = False) -> bool:
    """Owned by this process's user and writable by no one else (a symlink is not, unless
    `follow`: the configured cache directory may be one)."""
    info = os.stat(path) if follow else os.lstat(path)
    return (
        info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and not stat.S_ISLNK(info.st_mode)
    )


def _inside(entry: Path, artifact: str) -> bool:
    """The artifact resolves (symlinks included) to a path in the entry, and is ours."""
    path = Path(os.path.realpath(entry / artifact))
    return path.is_relative_to(os.path.realpath(entry)) and _ours(path)
