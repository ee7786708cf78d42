"""A search's outcome: the table of candidates and the chosen one, as stored in the cache."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One candidate's line: how long it took to prepare, its speed, its agreement."""

    name: str
    prepare_s: float | None = None
    img_s_1: float | None = None  # requests per second at batch 1
    img_s_max: float | None = None  # at the pool's max_batch_size
    agreement: float | None = None  # see autodep.optimize.gate
    max_diff: float | None = None
    skipped: str | None = None  # why the candidate is out, if it is
    artifact: str | None = None  # relative to the cache entry
    note: str | None = None  # how it was made, e.g. what an int8 candidate was calibrated on

    @property
    def ms_1(self) -> float | None:
        return None if self.img_s_1 is None else 1000 / self.img_s_1


@dataclass(frozen=True)
class Result:
    key: str
    chosen: str
    rows: tuple[Row, ...]
    max_batch_size: int
    threads: int
    machine: str
    search_s: float

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)

    def save(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=1))
        partial.replace(path)  # readers never see half a file

    @classmethod
    def load(cls, path: Path) -> Result:
        data = json.loads(path.read_text())
        data["rows"] = tuple(Row(**row) for row in data["rows"])
        return cls(**data)
