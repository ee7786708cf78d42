"""Where search results live, and the key that says when one still holds.

The key covers everything that could change a search's outcome: the model file's bytes, the
CPU (model name and flags), the library versions, the input shapes, the candidates and their
options, the gate's tolerance and samples, the batch size and threads measured. A new CPU or
library thus runs a new search instead of trusting an old one. Entries are directories
``<root>/<key>/`` holding ``result.json`` and each candidate's artifacts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autodep.optimize.candidates import Candidate
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


def lookup(root_dir: Path, entry_key: str) -> Result | None:
    """The stored result of a search with this key, if there is one."""
    path = root_dir / entry_key / RESULT
    try:
        return Result.load(path)
    except (OSError, ValueError, TypeError, KeyError):
        return None
