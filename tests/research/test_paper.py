"""`python -m bench.paper`: a section measured, rendered with its figure, then reused."""

from __future__ import annotations

import re

from bench import paper


def test_one_section_measured_then_reused(tmp_path):
    out = tmp_path / "report"
    assert paper.main(["--out", str(out), "--quick", "--only", "transport"]) == 0
    report = (out / "report.md").read_text()
    saved = out / "data" / "transport.json"
    measured_at = saved.stat().st_mtime_ns

    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert images == ["transport.png"]
    assert (out / "transport.png").stat().st_size > 0
    assert "| Transport | shared memory beats pickling through a pipe (1 image) |" in report
    # Every other section, the other benches' (optimize, faults, ...) included:
    assert report.count("Not measured in this run (`--only`).") >= 4
    for heading in ("## 1. The problem", "## 2. The design", "## 3. Method", "## 4. Results"):
        assert heading in report

    assert paper.main(["--out", str(out), "--reuse", "--only", "transport"]) == 0
    assert saved.stat().st_mtime_ns == measured_at  # rendered again, not measured again
    assert "### 4.1 Transport" in (out / "report.md").read_text()
