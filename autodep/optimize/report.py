"""The candidate table, as `autodep optimize` prints it."""

from __future__ import annotations

from autodep.optimize.result import Result


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(result: Result, chosen: str | None = None) -> str:
    """A Markdown table: one line per candidate, the chosen one (default: the search's) marked;
    then the candidates' notes (what an int8 candidate was calibrated and gated on)."""
    chosen = chosen or result.chosen
    header = (
        "candidate",
        "prepare s",
        "img/s b1",
        f"img/s b{result.max_batch_size}",
        "ms b1",
        "agreement",
        "max diff",
        "skipped because",
        "chosen",
    )
    lines = [header, ("---",) * len(header)]
    for row in result.rows:
        lines.append(
            (
                row.name,
                _number(row.prepare_s, 2),
                _number(row.img_s_1, 1),
                _number(row.img_s_max, 1),
                _number(row.ms_1, 2),
                _number(row.agreement, 4),
                "-" if row.max_diff is None else f"{row.max_diff:.3g}",
                row.skipped or "",
                "yes" if row.name == chosen else "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rows = [
        "| "
        + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        + " |"
        for line in lines
    ]
    notes = [f"- {row.name}: {row.note}" for row in result.rows if row.note]
    return "\n".join(rows + (["", *notes] if notes else []))
