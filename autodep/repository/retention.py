"""Which version records the repository keeps: every live one, and a bounded history.

Failed and unloaded versions stay in the index so that an operator can read why
(Triton's UNAVAILABLE with a reason), but only the newest few: loads under ever
new names or numbers must not grow the index and the metrics without end.
"""

from __future__ import annotations

from collections.abc import Iterable

from autodep.repository.versions import ModelVersion

# Finished (failed or unloaded) versions kept for the index and /metrics, newest first.
HISTORY = 8


def kept(records: Iterable[ModelVersion], history: int = HISTORY) -> list[ModelVersion]:
    """The records to keep, in their given order.

    Live versions, always. Of the finished ones: per (model, number) the newest,
    if no live load of it is newer; of those, the `history` newest in all.
    """
    records = list(records)
    newest_live: dict[tuple[str, int], int] = {}
    newest_finished: dict[tuple[str, int], ModelVersion] = {}
    for record in records:
        key = (record.model, record.number)
        if record.live:
            newest_live[key] = max(newest_live.get(key, 0), record.id)
        elif key not in newest_finished or record.id > newest_finished[key].id:
            newest_finished[key] = record
    finished = [r for key, r in newest_finished.items() if r.id > newest_live.get(key, 0)]
    recent = {r.id for r in sorted(finished, key=lambda r: r.id)[-history:]} if history else set()
    return [r for r in records if r.live or r.id in recent]
