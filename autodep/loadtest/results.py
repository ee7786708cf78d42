"""A run's directory: what `run` writes there, and reading it back (`report`, `compare`).

DIR/requests.csv   one RequestRecord per request
DIR/server.csv     one ServerSample per model per scrape (absent with --no-scrape)
DIR/summary.json   {"run": how it was run, ...autodep.loadtest.stats.summarize()}
DIR/*.png          autodep.loadtest.plots
DIR/report.md      autodep.loadtest.report
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autodep.loadtest.records import RequestRecord, ServerSample, read_csv, write_csv

REQUESTS = "requests.csv"
SERVER = "server.csv"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class SavedRun:
    directory: Path
    records: list[RequestRecord]
    samples: list[ServerSample]
    summary: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.summary.get("run", {}).get("label") or self.directory.name)


def save(
    directory: Path,
    records: list[RequestRecord],
    samples: list[ServerSample],
    summary: dict[str, Any],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / REQUESTS, records, RequestRecord)
    if samples:
        write_csv(directory / SERVER, samples, ServerSample)
    write_summary(directory, summary)


def write_summary(directory: Path, summary: dict[str, Any]) -> None:
    (directory / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")


def load(directory: Path) -> SavedRun:
    if not (directory / REQUESTS).exists():
        raise SystemExit(f"{directory}: no {REQUESTS}; is it the --out of a `bench run`?")
    server = directory / SERVER
    summary_path = directory / SUMMARY
    return SavedRun(
        directory=directory,
        records=read_csv(directory / REQUESTS, RequestRecord),
        samples=read_csv(server, ServerSample) if server.exists() else [],
        summary=json.loads(summary_path.read_text()) if summary_path.exists() else {},
    )
