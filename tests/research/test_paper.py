"""`python -m research.paper --reuse`: the report rendered again from saved results.

A fast check of the generator's code, not a measurement: it renders the figures
committed under docs/report/data/ into a fresh directory, measures nothing (the
sections without saved results say so) and writes every figure it names.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from research import paper

SAVED = Path(__file__).resolve().parents[2] / "docs" / "report" / "data"


def test_report_rendered_from_saved_results(tmp_path):
    out = tmp_path / "report"
    shutil.copytree(SAVED, out / "data")
    before = {p.name: p.read_bytes() for p in (out / "data").iterdir()}

    assert paper.main(["--out", str(out), "--reuse", "--only", "transport"]) == 0

    report = (out / "report.md").read_text()
    for heading in ("## 1. The problem", "## 2. The design", "## 3. Method", "## 4. Results"):
        assert heading in report
    assert "### 4.1 Transport" in report
    assert "| Transport | shared memory beats pickling through a pipe (1 image) |" in report
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert "transport.png" in images
    for image in images:
        assert (out / image).stat().st_size > 0, image
    # Nothing was measured again: the saved results are as they were.
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == before
