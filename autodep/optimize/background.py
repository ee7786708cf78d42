"""A first start that never waits for the optimizer: the search runs behind a serving model.

    start ─► the file as given serves at once (no variant, the configured settings)
      │
      ▼  in the background, one model after the other (so searches do not disturb each other):
    searching ── variants: `python -m autodep.optimize.trial` (a child process, cached)
      │          plan: pools on the service's launcher (`find_plan`, cached; "candidate": k/n)
      ▼
    rolling out ─ the repository reloads the model's entry, as a load request does: the new
      │           version's workers load the chosen variant from the cache and warm up before
      ▼           it is routed and the as-given version drains
    done  (or failed, with the reason: the file as given keeps serving)

The server process never runs torch: the variant search is a child process, and the plan
search drives worker pools. `--optimize-wait` keeps the older behaviour (search, then serve).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from autodep.config import ModelConfig, ServerConfig
from autodep.errors import AutodepError
from autodep.optimize.resolve import resolve
from autodep.optimize.search import Job, run_async
from autodep.optimize.serving import find_plan
from autodep.pool.launcher import Launcher

log = logging.getLogger(__name__)

State = Literal["searching", "rolling out", "done", "failed"]


@dataclass
class Progress:
    """One model's background search, as GET /status shows it (under "optimize")."""

    state: State = "searching"
    phase: Literal["variants", "plan", None] = "variants"
    # variants: the candidate being measured, "k/n", and its name; plan: candidates measured
    candidate: str | None = None
    name: str | None = None
    error: str | None = None
    started_at: float = 0.0  # time.monotonic()
    finished_at: float | None = None

    def status(self) -> dict[str, Any]:
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return {
            "state": self.state,
            "phase": self.phase,
            "candidate": self.candidate,
            **({"name": self.name} if self.name else {}),
            "elapsed_s": round(end - self.started_at, 1),
            **({"error": self.error} if self.error else {}),
        }


class BackgroundSearch:
    """Searches for models that serve as given meanwhile, then has each rolled out."""

    def __init__(
        self,
        config: ServerConfig,
        launcher: Launcher,
        roll_out: Callable[[str], Awaitable[None]],
    ) -> None:
        self._config = config
        self._launcher = launcher
        self._roll_out = roll_out  # reload a model by name (Repository.refresh)
        self.progress: dict[str, Progress] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, searches: list[tuple[ModelConfig, list[tuple[ModelConfig, Job]]]]) -> None:
        """Search, for each model entry, the versions listed with their jobs (in the running
        loop), one model after the other; then roll each out."""
        now = time.monotonic()
        for entry, _ in searches:
            self.progress[entry.name] = Progress(started_at=now)
        self._task = asyncio.get_running_loop().create_task(self._run(searches))

    async def wait(self) -> None:
        """Return once every search has rolled out or failed."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Cancel what runs (the search's child process is killed)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, searches: list[tuple[ModelConfig, list[tuple[ModelConfig, Job]]]]) -> None:
        for entry, versions in searches:
            progress = self.progress[entry.name]
            progress.started_at = time.monotonic()
            try:
                for version, job in versions:
                    await self._search(version, job, progress)
                progress.state, progress.phase = "rolling out", None
                await self._roll_out(entry.name)
            except AutodepError as exc:
                self._failed(entry.name, progress, exc.message)
            except Exception as exc:  # a bug: say so in /status, keep serving as given
                log.exception("model %r: background search failed", entry.name)
                self._failed(entry.name, progress, f"{type(exc).__name__}: {exc}")
            else:
                progress.state, progress.finished_at = "done", time.monotonic()
                log.info("model %r: the search's choice is served", entry.name)

    async def _search(self, model: ModelConfig, job: Job, progress: Progress) -> None:
        progress.phase, progress.candidate = "variants", None

        def starting(counted: str, name: str) -> None:
            progress.candidate, progress.name = counted, name

        await run_async(job, starting)  # cached from now on
        loop = asyncio.get_running_loop()
        variant = await loop.run_in_executor(None, resolve, model, self._config)  # the cache
        progress.phase, progress.candidate, progress.name = "plan", None, None

        def measured(done: int, total: int) -> None:
            progress.candidate = f"{done}/{total}"

        await find_plan(model, self._config, variant, self._launcher, measured)  # cached

    def _failed(self, name: str, progress: Progress, reason: str) -> None:
        log.warning("model %r: still served as given: %s", name, reason)
        progress.state, progress.error = "failed", reason
        progress.finished_at = time.monotonic()
