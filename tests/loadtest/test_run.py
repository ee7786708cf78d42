"""`autodep loadtest run` against a real server: every request recorded, the server
scraped, the report and its figures written, and `report` redone from the directory."""

from __future__ import annotations

import csv
import io
import json

from PIL import Image

from autodep import cli
from autodep.testing.server import ServerProcess
from tests import models


def test_run_records_scrapes_and_reports(tmp_path):
    model = models.save(models.ColorNet(), tmp_path / "colors.pt")
    picture = tmp_path / "green.png"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 200, 0)).save(buffer, "PNG")
    picture.write_bytes(buffer.getvalue())
    schedule = tmp_path / "s.jsonl"
    make = ["loadtest", "make", "constant", "--rate", "20", "--duration", "1"]
    assert (
        cli.main([*make, "--model", "colors", "--payload", str(picture), "--out", str(schedule)])
        == 0
    )

    flags = ["--model", str(model), "--min-workers", "1", "--max-workers", "1", "--optimize", "off"]
    out = tmp_path / "run"
    with ServerProcess("loadtest", flags, tmp_path / "server.log") as server:
        run = ["run", str(schedule), "--url", server.url(), "--out", str(out), "--quiet"]
        assert cli.main(["loadtest", *run, "--scrape-interval", "0.2", "--linger", "0.5"]) == 0

    with open(out / "requests.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 20
    assert {row["status"] for row in rows} == {"200"}
    assert {row["model"] for row in rows} == {"colors"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] == 20 and summary["ok"] == 20 and summary["failed"] == 0
    assert summary["scrapes"] >= 2  # /metrics was read during the run
    assert (out / "server.csv").stat().st_size > 0
    report = (out / "report.md").read_text()
    figures = [name for name in ("latency.png", "workers.png", "queue.png") if name in report]
    assert figures
    for name in figures:
        assert (out / name).stat().st_size > 0

    (out / "report.md").unlink()
    assert cli.main(["loadtest", "report", str(out), "--slo-ms", "5000"]) == 0
    assert json.loads((out / "summary.json").read_text())["slo_attainment"] == 1.0
    assert (out / "report.md").exists()
