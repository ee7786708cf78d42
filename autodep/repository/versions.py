"""One model version's lifecycle, as a small state machine.

    LOADING ──► READY ──► DRAINING ──► UNLOADED
       │
       └──► FAILED (with the reason)

A version is LOADING while its workers load the file and pass their warm-up;
only a READY version receives requests. DRAINING: no new request reaches it,
those that already could still finish. Every transition is logged and kept
(with its time and reason) for the repository index and /status.
"""

from __future__ import annotations

import enum
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    UNLOADED = "unloaded"
    FAILED = "failed"

    @property
    def triton(self) -> str:
        """The state's name in Triton's repository index."""
        return _TRITON[self]


_TRITON = {
    State.LOADING: "LOADING",
    State.READY: "READY",
    State.DRAINING: "UNLOADING",
    State.UNLOADED: "UNAVAILABLE",
    State.FAILED: "UNAVAILABLE",
}

ALLOWED = {
    State.LOADING: {State.READY, State.FAILED},
    State.READY: {State.DRAINING},
    State.DRAINING: {State.UNLOADED},
    State.UNLOADED: set(),
    State.FAILED: set(),
}
LIVE = (State.LOADING, State.READY, State.DRAINING)

_ids = itertools.count(1)


class TransitionError(RuntimeError):
    """A transition the state machine does not have (a bug, never a client's error)."""


@dataclass(frozen=True)
class Transition:
    state: State
    at: float  # wall-clock time
    reason: str


@dataclass(eq=False)
class ModelVersion:
    """One load of one version of a model; a reload with the same number is a new one."""

    model: str
    number: int
    on_change: Callable[[ModelVersion], None] = lambda version: None
    id: int = field(default_factory=lambda: next(_ids))  # orders loads of the same version
    history: list[Transition] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history.append(Transition(State.LOADING, time.time(), "loading"))
        log.info("model %r version %d: loading", self.model, self.number)
        self.on_change(self)

    @property
    def state(self) -> State:
        return self.history[-1].state

    @property
    def reason(self) -> str:
        return self.history[-1].reason

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def to(self, state: State, reason: str) -> None:
        if state not in ALLOWED[self.state]:
            raise TransitionError(
                f"model {self.model!r} version {self.number}: {self.state.value} → {state.value}"
            )
        self.history.append(Transition(state, time.time(), reason))
        level = logging.ERROR if state is State.FAILED else logging.INFO
        log.log(level, "model %r version %d: %s (%s)", self.model, self.number, state.value, reason)
        self.on_change(self)

    def index_entry(self) -> dict[str, str]:
        """This version as an entry of Triton's repository index."""
        reason = "" if self.state is State.READY else self.reason
        return {
            "name": self.model,
            "version": str(self.number),
            "state": self.state.triton,
            "reason": reason,
        }

    def status(self) -> dict[str, object]:
        return {
            "version": self.number,
            "state": self.state.value,
            "reason": self.reason,
            "transitions": [
                {"state": t.state.value, "at": t.at, "reason": t.reason} for t in self.history
            ],
        }
