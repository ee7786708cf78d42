"""What the repository index and /metrics show: every version's record, and its transitions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from autodep.metrics import VersionStats
from autodep.repository.versions import ModelVersion, State


class History:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change  # after every transition (the repository wakes waiters)
        self._records: list[ModelVersion] = []  # shown: live versions, the last finished ones
        self.transitions: Counter[tuple[str, str]] = Counter()  # (model, state entered)

    def new(self, model: str, number: int) -> ModelVersion:
        """A version's record, LOADING; every transition it makes is recorded here."""
        return ModelVersion(model, number, on_change=self._changed)

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: [{"name", "version", "state", "reason"}]."""
        return [r.index_entry() for r in self._sorted() if not ready_only or r.state is State.READY]

    def status(self) -> list[dict[str, Any]]:
        return [{"name": r.model, **r.status()} for r in self._sorted()]

    def stats(self) -> VersionStats:
        """The versions by state, and the transitions so far (a snapshot for /metrics)."""
        counts = Counter((r.model, str(r.number), r.state.value) for r in self._records)
        return VersionStats(dict(counts), dict(self.transitions))

    def last_reason(self, name: str, number: int) -> str:
        failed = [r for r in self._records if (r.model, r.number) == (name, number)]
        return failed[-1].reason if failed else "unknown"

    def _sorted(self) -> list[ModelVersion]:
        return sorted(self._records, key=lambda r: (r.model, r.number, r.id))

    def _changed(self, record: ModelVersion) -> None:
        if record not in self._records:
            self._records.append(record)
        self.transitions[(record.model, record.state.value)] += 1
        self._records = list(_visible(self._records))
        self._on_change()


def _visible(records: list[ModelVersion]) -> Iterator[ModelVersion]:
    """Live versions, and per (model, number) the newest finished one if no live one is newer."""
    keys = {(r.model, r.number) for r in records}
    for key in keys:
        same = [r for r in records if (r.model, r.number) == key]
        live = [r for r in same if r.live]
        yield from live
        finished = [r for r in same if not r.live]
        newest_live = max((r.id for r in live), default=0)
        if finished and (last := max(finished, key=lambda r: r.id)).id > newest_live:
            yield last
