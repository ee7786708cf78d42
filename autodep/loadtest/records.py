"""What a load test records, and how it goes to and from CSV.

    RequestRecord   one request as the client saw it (requests.csv)
    ServerSample    one scrape of /metrics for one model (server.csv)

Times are seconds on the run's own clock: 0 is the schedule's start, as the
executor saw it (`time.monotonic()` based). None is written as an empty cell.
"""

from __future__ import annotations

import csv
import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

OK = 200  # the only status that counts as a success
NO_RESPONSE = 0  # status of a request that got no HTTP answer (timeout, refused, reset)


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    index: int  # position in the schedule
    model: str  # "" when the schedule names none (POST /predict)
    payload: str  # the payload reference ("" = the default JPEG)
    scheduled_s: float  # when it should have been sent
    sent_s: float  # when it was sent
    latency_s: float  # from sending to the last byte of the answer (or to the failure)
    status: int  # HTTP status, NO_RESPONSE (0) if none
    error: str  # the error text ("" for 200)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def done_s(self) -> float:
        return self.sent_s + self.latency_s

    @property
    def send_error_s(self) -> float:
        """How late the generator sent it (negative: early)."""
        return self.sent_s - self.scheduled_s


@dataclasses.dataclass(frozen=True)
class ServerSample:
    t: float  # when the scrape was answered
    model: str
    starting: int
    idle: int
    busy: int
    stopping: int
    desired: float | None  # autodep_desired_workers, None where the server has none
    queue_depth: int
    batch_count: float  # cumulative autodep_batch_size_count
    batch_sum: float  # cumulative autodep_batch_size_sum
    batch_mean: float | None  # mean batch size since the previous scrape (None: no batch)

    @property
    def live(self) -> int:
        """Workers that hold a process and its memory and can (or soon will) serve."""
        return self.starting + self.idle + self.busy


Record = TypeVar("Record", RequestRecord, ServerSample)


def write_csv(path: Path, rows: Iterable[Record], cls: type[Record]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        for row in rows:
            writer.writerow(_cell(getattr(row, name)) for name in names)


def read_csv(path: Path, cls: type[Record]) -> list[Record]:
    hints = typing.get_type_hints(cls)
    with path.open(newline="") as file:
        return [
            cls(**{name: _parse(value, hints[name]) for name, value in row.items()})
            for row in csv.DictReader(file)
        ]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value == value else "nan"
    return str(value)


def _parse(text: str, hint: Any) -> Any:
    if isinstance(hint, types.UnionType):  # `X | None`
        if text == "":
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is str:
        return text
    return hint(float(text)) if hint is int else hint(text)
