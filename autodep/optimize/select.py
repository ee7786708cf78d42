"""Choosing the variant: a pure function of the measured table.

The pool runs batches of one when traffic is light and of `max_batch_size` under load, so a
variant must be at least as fast as the model as given at both sizes; among those, the one with
the best geometric mean of its two speed-ups wins (the model as given, at 1x, when none is
faster). Candidates skipped for any reason (not applicable, failed, changed the answers) are
out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autodep.optimize.result import Row


def choose(rows: Sequence[Row], baseline: str) -> str:
    base = next(row for row in rows if row.name == baseline)
    if base.img_s_1 is None or base.img_s_max is None:
        return baseline
    best, best_score = baseline, 1.0
    for row in rows:
        if row.skipped is not None or row.img_s_1 is None or row.img_s_max is None:
            continue
        ratios = (row.img_s_1 / base.img_s_1, row.img_s_max / base.img_s_max)
        if min(ratios) < 1.0:
            continue
        score = math.sqrt(ratios[0] * ratios[1])
        if score > best_score:
            best, best_score = row.name, score
    return best
