"""Report sections for benches that other branches add: their output and figures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

from research.paper_base import Context, Part

Measure = Callable[[Context], dict[str, Any]]
Render = Callable[[Context, dict[str, Any]], Part]


def external(name: str) -> tuple[Measure, Render]:
    """measure/render for `bench.NAME`: its command line's output and its figures."""

    def measure(ctx: Context) -> dict[str, Any]:
        module = f"bench.{name}"
        helped = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True
        ).stdout
        command = [sys.executable, "-m", module]
        if "--quick" in helped and ctx.quick:
            command.append("--quick")
        if "--out" in helped:
            command += ["--out", str(ctx.out / name)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30 * 60)
        return {"command": command[1:], "code": done.returncode, "stdout": done.stdout[-6000:]}

    def render(ctx: Context, results: dict[str, Any]) -> Part:
        figures = sorted((ctx.out / name).glob("*.png")) if (ctx.out / name).is_dir() else []
        lines = [
            f"`python {' '.join(results['command'])}` (exit code {results['code']}) printed:",
            "",
            "```",
            results["stdout"].rstrip(),
            "```",
            "",
            *(f"![{f.stem}]({name}/{f.name})" for f in figures),
        ]
        return Part(lines, [])

    return measure, render
