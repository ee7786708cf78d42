"""The project's report: run (or reuse) the benchmarks, write DIR/report.md with its figures.

    python -m research.paper --out docs/report [--quick] [--reuse] [--only NAME ...]

Each section is a small registered `Section` (bench/paper_sections.py): `measure`
runs its benchmark and returns JSON-able results, saved to DIR/data/NAME.json;
`render` turns them into Markdown, PNG figures in DIR and goals (met or not, and
why). `--reuse` renders from the saved JSON where it exists and measures only
what is missing. A section whose bench module is not in this build (another
branch adds it) reads "not measured". A PDF is made too if pandoc (with a PDF
engine) is installed.

Regenerating on another machine measures that machine: every figure is
compared against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from autodep.loadtest.report import table
from bench.common import cpu_model
from research.paper_base import SECTIONS, Context, Part, Section

REPORT = "report.md"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
LIBRARIES = (
    "torch",
    "torchvision",
    "numpy",
    "aiohttp",
    "pillow",
    "msgpack",
    "psutil",
    "onnxruntime",
    "openvino",
    "matplotlib",
    "pytest-benchmark",
)


# -- running -----------------------------------------------------------------------


def saved_path(ctx: Context, section: Section) -> Path:
    return ctx.out / "data" / f"{section.name}.json"


def available(section: Section) -> bool:
    return section.module is None or importlib.util.find_spec(section.module) is not None


def results_of(ctx: Context, section: Section, reuse: bool) -> dict[str, Any]:
    """The saved results (with --reuse), else a fresh measurement, saved."""
    path = saved_path(ctx, section)
    if reuse and path.exists():
        print(f"[paper] {section.name}: reusing {path}", flush=True)
        saved: dict[str, Any] = json.loads(path.read_text())
        return saved
    print(f"[paper] {section.name}: measuring", flush=True)
    began, load_before = time.monotonic(), os.getloadavg()
    results = section.measure(ctx)
    saved = {
        "results": results,
        "seconds": time.monotonic() - began,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "quick": ctx.quick,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    return saved


def run_section(ctx: Context, section: Section, reuse: bool) -> tuple[Part, dict[str, Any] | None]:
    if not available(section):
        module_path = (section.module or "").replace(".", "/") + ".py"
        return Part([f"Not measured: `{module_path}` is not in this build."]), None
    try:
        saved = results_of(ctx, section, reuse)
        return section.render(ctx, saved["results"]), saved
    except Exception as exc:  # one failing bench must not cost the rest of the report
        traceback.print_exc()
        return Part([f"Not measured: the run failed ({type(exc).__name__}: {exc})."]), None


# -- the report --------------------------------------------------------------------


def machine() -> list[list[str]]:
    flags = _cpu_flags()
    memory = psutil.virtual_memory().total / 2**30
    return [
        ["CPU", f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores usable"],
        ["CPU flags (of interest)", ", ".join(f for f in CPU_FLAGS if f in flags) or "none"],
        ["memory", f"{memory:.0f} GiB"],
        ["OS", f"{platform.system()} {platform.release()}"],
        ["Python", platform.python_version()],
        ["libraries", ", ".join(f"{n} {_version(n)}" for n in LIBRARIES)],
        ["commit", _commit()],
    ]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
        return head + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def method(argv: Sequence[str], runs: dict[str, dict[str, Any] | None]) -> list[str]:
    lines = ["## 3. Method", "", *table(["", ""], machine()), ""]
    lines += [
        f"Made by `python -m research.paper {' '.join(argv)}`. Every figure below is a "
        "comparison measured in one run, its sides taking turns (or alternating rounds), "
        "because the machine is **shared and noisy**: other jobs ran on the same two cores "
        "(the load averages below), so absolute times move from run to run by more than "
        "some of the differences being judged, ratios much less. `--quick` runs are short "
        "(a few seconds per point): read them as indications, not as a benchmark of record.",
        "",
    ]
    rows = []
    for section in SECTIONS:
        saved = runs.get(section.name)
        if saved is None:
            rows.append([section.title, section.how or "—", "not measured", "—", "—"])
            continue
        load = f"{saved['load_before'][0]:.1f} → {saved['load_after'][0]:.1f}"
        mode = "quick" if saved["quick"] else "full"
        rows.append([section.title, section.how, f"{saved['date']}, {mode}", load, _s(saved)])
    headers = ["section", "what is timed, against what", "measured", "load 1 min", "took"]
    lines += table(headers, rows)
    cpus = {saved["cpu"] for saved in runs.values() if saved}
    if len(cpus) > 1:
        lines += ["", f"**Reused results come from different CPUs**: {', '.join(sorted(cpus))}."]
    return [*lines, ""]


def _s(saved: dict[str, Any]) -> str:
    return f"{saved['seconds']:.0f} s"


def goals_table(parts: dict[str, Part]) -> list[str]:
    rows = []
    for section in SECTIONS:
        for goal in parts[section.name].goals:
            verdict = {True: "met", False: "**missed**", None: "—"}[goal.met]
            rows.append([section.title, goal.what, goal.measured, verdict])
    return table(["section", "goal", "measured", ""], rows) if rows else ["No goals checked."]


def missed(parts: dict[str, Part]) -> list[str]:
    lines = ["## 5. What did not meet its goal, and why", ""]
    found = [
        (section, goal)
        for section in SECTIONS
        for goal in parts[section.name].goals
        if goal.met is False
    ]
    for section, goal in found:
        lines.append(f"- **{section.title}: {goal.what}** — measured {goal.measured}. {goal.why}")
    if not found:
        lines.append("Every goal checked was met in this run.")
    not_measured = [s.title for s in SECTIONS if not parts[s.name].goals and not available(s)]
    if not_measured:
        lines += ["", f"Not measured in this build: {', '.join(not_measured)}."]
    return [*lines, ""]


def render(
    argv: Sequence[str], parts: dict[str, Part], runs: dict[str, dict[str, Any] | None]
) -> str:
    from research import paper_text

    lines = [
        "# autodep: automatic, elastic deployment of PyTorch models — the report",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {cpu_model()} "
        f"by `python -m research.paper {' '.join(argv)}`; regenerate it the same way on "
        "another machine to get that machine's figures.",
        "",
        "**Goals at a glance**",
        "",
        *goals_table(parts),
        "",
        paper_text.PROBLEM,
        paper_text.design(),
        *method(argv, runs),
        "## 4. Results",
        "",
    ]
    for number, section in enumerate(SECTIONS, 1):
        lines += [f"### 4.{number} {section.title}", "", *parts[section.name].lines, ""]
    lines += missed(parts)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def pdf(report: Path) -> str:
    """report.pdf with pandoc, when pandoc and a PDF engine are installed."""
    pandoc = shutil.which("pandoc")
    engines = [e for e in ("pdflatex", "xelatex", "wkhtmltopdf", "weasyprint") if shutil.which(e)]
    if pandoc is None or not engines:
        return "no PDF: pandoc with a PDF engine (pdflatex, wkhtmltopdf, ...) is not installed"
    target = report.with_suffix(".pdf")
    done = subprocess.run(
        [pandoc, report.name, "-o", target.name, f"--pdf-engine={engines[0]}"],
        cwd=report.parent,
        capture_output=True,
        text=True,
    )
    return f"wrote {target}" if done.returncode == 0 else f"no PDF: pandoc said {done.stderr}"


def main(argv: Sequence[str] | None = None) -> int:
    from research import paper_sections  # noqa: F401  (registers the sections)

    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory of report.md")
    parser.add_argument("--quick", action="store_true", help="short runs (about 8 minutes)")
    parser.add_argument("--reuse", action="store_true", help="render saved results in DIR/data")
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in SECTIONS],
        help="measure only this section (repeatable); the others only if saved before",
    )
    args = parser.parse_args(args_list)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="autodep-paper-"))
    ctx = Context(args.out, args.quick, work)
    parts: dict[str, Part] = {}
    runs: dict[str, dict[str, Any] | None] = {}
    try:
        for section in SECTIONS:
            skipped = bool(args.only) and section.name not in args.only
            if skipped and available(section) and not saved_path(ctx, section).exists():
                parts[section.name] = Part(["Not measured in this run (`--only`)."])
                runs[section.name] = None
                continue
            reuse = args.reuse or skipped
            parts[section.name], runs[section.name] = run_section(ctx, section, reuse)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = args.out / REPORT
    report.write_text(render(args_list, parts, runs))
    print(f"[paper] wrote {report} in {time.monotonic() - began:.0f} s; {pdf(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
