"""`autodep batch --ray auto`: the items spread over a real two-node Ray cluster (loopback).

The model comes from the S3 test server (tests/s3.py), so each node's agent
fetches it into its cache as a remote host would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import models
from tests.support.images import COLORS, picture
from tests.support.s3 import Bucket

pytest.importorskip("ray")

from autodep.cluster.local import LocalCluster, NodeSpec

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Replaces the per-test check: the cluster's own stop checks its processes."""
    yield


def test_batch_spreads_items_over_the_nodes(tmp_path: Path, s3: Bucket) -> None:
    # The AWS variables the s3 fixture set reach the nodes: the cluster starts after it.
    model = s3.put("slow.pt", models.save(models.SlowColorNet(iterations=20), tmp_path / "s.pt"))
    s3.put("slow.labels.txt", "\n".join(COLORS).encode())
    pictures = tmp_path / "in"
    pictures.mkdir()
    for i in range(60):
        (pictures / f"{i:02d}.png").write_bytes(picture(i))
    pictures.joinpath("broken.png").write_bytes(b"not a picture")
    output = tmp_path / "out"
    with LocalCluster([NodeSpec(cpus=1), NodeSpec(cpus=1)]) as cluster:
        done = subprocess.run(
            [
                sys.executable, "-m", "autodep.cli", "batch", "--ray", "auto", "--no-progress",
                "--model", model, "--input", str(pictures), "--output", str(output),
                "--max-batch-size", "1", "--log-level", "INFO",
            ],
            env={**cluster.env, "PYTHONPATH": os.getcwd()},
            capture_output=True,
            text=True,
            timeout=200,
        )  # fmt: skip
        pids = cluster.pids()
    assert done.returncode == 0, done.stderr
    results = {
        r["key"]: r for r in map(json.loads, (output / "results.jsonl").read_text().splitlines())
    }
    assert len(results) == 61
    assert "decode" in results.pop("broken.png")["error"]
    for key, r in results.items():
        assert r["result"]["predictions"][0]["label"] == COLORS[int(key[:2]) % 3]
    spread = [line for line in done.stderr.splitlines() if "items served per node" in line]
    assert spread, done.stderr
    counts = [int(part.rsplit(":", 1)[1]) for part in spread[0].split("node: ")[1].split(", ")]
    assert len(counts) == 2 and all(n > 0 for n in counts), spread[0]
    assert not [p for p in pids if _running(p)], "Ray or worker processes outlived the cluster"


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
