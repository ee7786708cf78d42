"""What the repository index and /metrics show: every version's record, and its transitions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from autodep.metrics import VersionStats
from autodep.repository.retention import kept
from autodep.repository.versions import ModelVersion, State


class History:
    def __init__(self, on_change: Callable[[], None], on_forget: Callable[[str], None]) -> None:
        self._on_change = on_change  # after every transition (the repository wakes waiters)
        self._on_forget = on_forget  # a model with no record left (its metric series go too)
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
        before = {r.model for r in self._records}
        self._records = kept(self._records)
        for name in before - {r.model for r in self._records}:
            self._forget(name)
        self._on_change()

    def _forget(self, name: str) -> None:
        """A model with no version left in the history: drop its transitions and series."""
        for key in [k for k in self.transitions if k[0] == name]:
            del self.transitions[key]
        self._on_forget(name)
