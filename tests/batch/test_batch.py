"""`autodep batch` and `Autodep.map`: a data set through a model, resumable.

The CLI runs as a user runs it (a separate process); the data sits in a real
S3-compatible server (tests/s3.py) or in local folders.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from autodep import Autodep
from autodep.batch.items import Input, Result
from autodep.batch.results import ResultLog
from tests import models
from tests.support.images import COLORS, picture
from tests.support.s3 import Bucket


def batch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autodep.cli", "batch", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_batch_over_a_thousand_pictures_in_a_bucket(s3: Bucket, color_model: Path) -> None:
    model = s3.put("models/colors.pt", color_model)
    s3.put("models/colors.labels.txt", b"red\ngreen\nblue\n")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put(f"pictures/{i:04d}.png", picture(i)), range(999)))
    s3.put("pictures/corrupt.png", picture(0)[:40])  # a PNG cut short
    done = batch(
        "--model", model, "--input", f"s3://{s3.name}/pictures/",
        "--output", f"s3://{s3.name}/results/", "--max-workers", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = lines(s3.get("results/results.jsonl").decode())
    assert len(results) == 1000
    assert len({r["key"] for r in results}) == 1000
    errors = [r for r in results if "error" in r]
    assert [r["key"] for r in errors] == ["corrupt.png"]
    assert "decode" in str(errors[0]["error"])
    for r in results:
        if r["key"] != "corrupt.png":
            index = int(str(r["key"]).removesuffix(".png"))
            result = r["result"]
            assert isinstance(result, dict) and result["model"] == "colors"
            assert result["predictions"][0]["label"] == COLORS[index % 3]
    assert "999 done, 1 failed, 0 skipped" in done.stderr


def test_a_killed_job_rerun_ends_with_each_item_exactly_once(tmp_path: Path) -> None:
    model = models.save(models.SlowColorNet(iterations=20), tmp_path / "slow.pt")
    pictures = tmp_path / "in"
    pictures.mkdir()
    for i in range(200):
        (pictures / f"{i:03d}.png").write_bytes(picture(i))
    output = tmp_path / "out"
    args = ["--model", str(model), "--input", str(pictures), "--output", str(output)]
    args += ["--max-workers", "1", "--max-batch-size", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "autodep.cli", "batch", "--no-progress", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = output / "results.jsonl"
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    try:
        # Polling with a deadline: the job's only signal of progress is its results file.
        while not (results.exists() and results.read_text().count("\n") >= 30):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        workers = psutil.Process(process.pid).children(recursive=True)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], "the killed job left processes behind"
    before = len(results.read_text().splitlines())
    assert 30 <= before < 200
    done = batch(*args)
    assert done.returncode == 0, done.stderr
    keys = [r["key"] for r in lines(results.read_text())]
    assert sorted(keys) == sorted(f"{i:03d}.png" for i in range(200))  # each exactly once
    assert f"{200 - before} done, 0 failed, {before} skipped" in done.stderr


def test_a_json_lines_input_with_text_paths_and_bad_lines(
    tmp_path: Path, color_model: Path
) -> None:
    (tmp_path / "a.png").write_bytes(picture(2))
    items = tmp_path / "items.jsonl"
    items.write_text(
        '{"key": "blue", "path": "a.png"}\n'
        "{not json\n"
        '{"key": "nothing"}\n'
        '{"key": "missing", "path": "nowhere.png"}\n'
    )
    done = batch(
        "--model", str(color_model), "--input", str(items), "--output", str(tmp_path / "o")
    )
    assert done.returncode == 0, done.stderr
    results = {r["key"]: r for r in lines((tmp_path / "o" / "results.jsonl").read_text())}
    assert set(results) == {"blue", "line 2", "nothing", "missing"}
    blue = results["blue"]["result"]
    assert isinstance(blue, dict) and blue["predictions"][0]["label"] == "blue"
    assert "not valid JSON" in str(results["line 2"]["error"])
    assert "give one of text, path or url" in str(results["nothing"]["error"])
    assert "FileNotFoundError" in str(results["missing"]["error"])


async def test_map_runs_items_of_any_kind_and_records_bad_ones(color_model: Path) -> None:
    async with Autodep(color_model, max_workers=1, max_body=1000) as ad:
        items = [
            picture(0),
            Input("green", picture(1)),
            Input("lazy", lambda: picture(2)),
            Input("big", bytes(2000)),
            Input("garbage", b"\x00garbage"),
        ]
        results = {r.key: r async for r in ad.map(items, concurrency=2)}
    assert set(results) == {"0", "green", "lazy", "big", "garbage"}
    labels = {k: r.result["predictions"][0]["label"] for k, r in results.items() if r.result}
    assert labels == {"0": "red", "green": "green", "lazy": "blue"}
    assert "more than --max-body 1000" in str(results["big"].error)
    assert results["garbage"].error is not None and not results["garbage"].ok


def test_the_result_log_cuts_a_torn_line_and_keeps_each_key_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"key":"a","result":{}}\n{"key":"b","res')
    log = ResultLog(str(out), None, tmp_path)
    assert log.open() == {"a"}  # b was cut off mid-line: it runs again
    log.write(Result("b", error="bad"))
    log.write(Result("b", result={"x": 1}))  # a key given twice: its first result stands
    log.close()
    assert lines((out / "results.jsonl").read_text()) == [
        {"key": "a", "result": {}},
        {"key": "b", "error": "bad"},
    ]


def test_an_s3_result_log_resumes_from_what_was_uploaded(s3: Bucket, tmp_path: Path) -> None:
    from autodep.storage.s3 import S3

    output = f"s3://{s3.name}/job/"
    first = ResultLog(output, S3(), tmp_path / "machine-1")
    assert first.open() == set()
    first.write(Result("a", result={}))
    first.close()  # uploads
    # Another machine (another staging folder) carries on from the uploaded log.
    second = ResultLog(output, S3(), tmp_path / "machine-2")
    assert second.open() == {"a"}
    second.write(Result("b", error="bad"))
    second.close()
    assert [r["key"] for r in lines(s3.get("job/results.jsonl").decode())] == ["a", "b"]
