"""The trust boundary of runtime loads: a load request names files only inside one folder.

A client allowed to call the load route chooses which model entry loads, so each
path it names (`path`, `versions`, `labels`, `tokenizer`, `optimize.samples`)
is resolved, symlinks included, and must end inside the repository directory:
the `--config` file's folder, else the server's working directory at start (a
server started in `/` has no such folder and refuses loads that name files).
Entries the operator wrote (the command line, the YAML) are not confined.

Missing, unreadable and not-a-regular-file all give the same answer, so that
the route does not tell a client which files exist.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from autodep.config import ModelConfig, ServerConfig
from autodep.errors import AutodepError, InvalidInput


class OutsideRepository(AutodepError):
    """A load entry names a file the repository directory does not hold."""

    status = 403


def repository_root(config: ServerConfig) -> Path | None:
    """The folder loads may name files in; None when it would be the filesystem's root."""
    base = config.repository.parent if config.repository is not None else Path.cwd()
    root = Path(os.path.realpath(base))
    return None if root == Path(root.anchor) else root


def confine(entry: ModelConfig, root: Path | None) -> ModelConfig:
    """The entry with every path resolved inside `root` (OutsideRepository if one is not)."""

    def inside(field: str, path: Path | None, folder: bool = False) -> Path | None:
        if path is None:
            return None
        if root is None:
            raise OutsideRepository(
                f"{field}: this server has no repository directory for loads to name files in "
                "(it was started in / without --config); start it with --config or from the "
                "models' folder"
            )
        try:
            real = Path(os.path.realpath(path))
        except (ValueError, OSError):  # a NUL byte; a symlink loop
            raise InvalidInput(f"{field}: not a usable file name") from None
        if not real.is_relative_to(root):
            raise OutsideRepository(
                f"{field}: the path leads outside the repository directory; a load may name "
                "only files inside it (the --config file's folder, else the server's "
                "working directory)"
            )
        if not _readable(real, folder):
            kind = "folder" if folder else "file"
            where = str(real.relative_to(root))
            raise InvalidInput(f"{field}: no readable {kind} {where!r} in the repository directory")
        return real

    versions = {n: inside(f"versions.{n}", p) for n, p in sorted(entry.versions.items())}
    samples = inside("optimize.samples", entry.optimize.samples, folder=True)
    return entry.model_copy(
        update={
            "path": inside("path", entry.path),
            "versions": versions,
            "labels": inside("labels", entry.labels),
            "tokenizer": inside("tokenizer", entry.tokenizer),
            "optimize": entry.optimize.model_copy(update={"samples": samples}),
        }
    )


def _readable(path: Path, folder: bool) -> bool:
    """Whether this process can open `path` as a regular file (or a folder).

    Opened, not stat'ed: only the open says whether it may be read. Non-blocking,
    so that a FIFO someone placed there does not hang the check.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if folder else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return False
    try:
        mode = os.fstat(descriptor).st_mode
    finally:
        os.close(descriptor)
    return stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)
