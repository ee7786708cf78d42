"""Poll mode: watch the repository YAML and the model files, act once they are quiet.

Every `repository_poll_s` seconds the watcher stats the YAML and every file its
entries name (model files, labels, tokenizers), and asks the object store for
the current version (ETag or version id) of every s3:// object they name. A change is acted on only
when a whole poll interval has passed without a further change, so a file
being copied is never loaded half-written; then the YAML is read again and
each model whose entry or files changed is rolled out (the new version must
load and pass its warm-up before it replaces the serving one), each new model
loaded and each model gone from the YAML unloaded. Without a YAML (models given
as --model files) the files of the startup entries are watched.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autodep.config import ModelConfig, load_repository, refetch
from autodep.errors import ConfigError

if TYPE_CHECKING:
    from autodep.storage.store import Store

log = logging.getLogger(__name__)

Stat = (
    tuple[int, int] | str | None
)  # (mtime_ns, size) of a file, an object's version; None: missing
Signature = tuple[tuple[str, Stat], ...]


@dataclass(frozen=True)
class Watched:
    entry: ModelConfig
    files: Signature


@dataclass(frozen=True)
class Plan:
    load: tuple[str, ...] = ()  # new models, and models whose entry or files changed
    unload: tuple[str, ...] = ()  # models no longer in the repository


def plan(before: Mapping[str, Watched], after: Mapping[str, Watched]) -> Plan:
    """What to do to go from the models watched before to those watched now (pure)."""
    return Plan(
        load=tuple(sorted(n for n in after if before.get(n) != after[n])),
        unload=tuple(sorted(set(before) - set(after))),
    )


class Quiet:
    """Says when a signature is new *and* was seen unchanged on two polls in a row."""

    def __init__(self, initial: Signature) -> None:
        self._last: Signature | None = initial
        self._acted: Signature | None = initial

    def settled(self, signature: Signature) -> bool:
        if signature != self._last:
            self._last = signature  # still changing: look again next time
            return False
        if signature == self._acted:
            return False
        self._acted = signature
        return True

    def retry(self) -> None:
        """Act again on the same signature next time (what it named could not be read)."""
        self._acted = None


def files_of(entry: ModelConfig) -> list[Path]:
    paths = [entry.path, *entry.versions.values(), entry.labels, entry.tokenizer]
    return sorted({p for p in paths if p is not None})


def stat(path: Path) -> Stat:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


def signature(paths: list[Path]) -> Signature:
    return tuple((str(p), stat(p)) for p in sorted(set(paths)))


def watch(entries: list[ModelConfig]) -> dict[str, Watched]:
    return {e.name: Watched(e, signature(files_of(e))) for e in entries}


Apply = Callable[[Plan, dict[str, ModelConfig]], Awaitable[None]]


class Watcher:
    def __init__(
        self,
        repository: Path | None,
        entries: list[ModelConfig],
        interval: float,
        apply: Apply,
        store: Store,
    ) -> None:
        self._repository = repository
        self._store = store
        self._interval = interval
        self._apply = apply
        # Models from --model files stay as they are unless their files change.
        names = set() if repository is None else {e.name for e in _read(repository, store)}
        self._fixed = [e for e in entries if e.name not in names]
        self._applied = watch(entries)  # what the served models were loaded from
        self._watching = entries  # the entries whose files make up the signature
        self._quiet = Quiet(self._signature(entries))
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        self.error: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {"interval_s": self._interval, "polls": self.polls, "error": self.error}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)  # the poll period, not a wait for a state
            try:
                await self.poll()
            except Exception:
                log.exception("poll of the model repository failed")
            self.polls += 1

    async def poll(self) -> None:
        """One look at the files; act if they changed and have been quiet since."""
        current = await asyncio.to_thread(self._signature, self._watching)
        if not self._quiet.settled(current):
            return
        try:
            entries = await asyncio.to_thread(self._entries)
        except ConfigError as exc:
            if exc.message != self.error:
                log.error("poll: %s; still serving the models as they were", exc.message)
            self.error = exc.message
            self._quiet.retry()  # read it again next time, until it is fixed
            return
        self.error = None
        if await asyncio.to_thread(self._signature, entries) != current:
            self._watching = entries  # it names other files: act once they are quiet too
            return
        after = await asyncio.to_thread(watch, entries)
        changes = plan(self._applied, after)
        self._applied, self._watching = after, entries
        if changes.load or changes.unload:
            log.info("poll: load %s, unload %s", list(changes.load), list(changes.unload))
            await self._apply(changes, {e.name: e for e in entries})

    def _entries(self) -> list[ModelConfig]:
        fixed = [refetch(e, self._store) for e in self._fixed]  # s3:// ones: current versions
        if self._repository is None:
            return fixed
        return fixed + _read(self._repository, self._store)

    def _signature(self, entries: list[ModelConfig]) -> Signature:
        paths = [p for e in entries for p in files_of(e)]
        if self._repository is not None:
            paths.append(self._repository)
        urls = [u for e in entries for u in e.remote.values()]
        return signature(paths) + (self._store.signature(urls) if urls else ())


def _read(repository: Path, store: Store) -> list[ModelConfig]:
    return load_repository(repository, store=store)
