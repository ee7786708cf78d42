"""What the batch engine takes and gives: an input item and its result line."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Load = Callable[[], bytes | str]  # reads an item's data when its turn comes (in a thread)


@dataclass(frozen=True)
class Input:
    """One item: its key (unique in the job), and its data or how to read it."""

    key: str
    data: bytes | str | Load
    content_type: str | None = None  # None: sniffed (images) as for an untyped POST
    error: str | None = None  # the item could not even be read (recorded as its result)


@dataclass(frozen=True)
class Result:
    """One line of results.jsonl: the /predict JSON, or the error that item met."""

    key: str
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        body = (
            {"key": self.key, "result": self.result}
            if self.ok
            else {"key": self.key, "error": self.error}
        )
        return json.dumps(body, separators=(",", ":")) + "\n"
