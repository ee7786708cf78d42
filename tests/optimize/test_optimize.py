"""The optimizer: candidates gated and measured in a child process, cached, served by workers.

One real search of a small conv net (`autodep optimize`, every candidate that applies on this
CPU) is shared by the tests; the others reuse its cache or search a candidate or two. Nothing
here depends on which candidate wins on this machine: the assertions hold on a CPU with
native bf16 and on one with AVX2 only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autodep.config import (
    Optimize,
    ServerConfig,
    build_config,
    load_repository,
    model_from_file,
)
from autodep.errors import ConfigError
from autodep.optimize import cache, gate
from autodep.optimize.candidates import AS_GIVEN, CANDIDATES, NAMES, Target, applies
from autodep.optimize.cpu import Machine, this_machine
from autodep.optimize.result import Row
from autodep.optimize.samples import samples
from autodep.optimize.search import job_for, run
from autodep.optimize.select import choose
from tests import models
from tests.support.images import RGB, image_bytes

pytestmark = pytest.mark.timeout(180)
BUDGET = "30"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("optimize") / "tiny.pt"
    return models.save(models.TinyConvNet(), path)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def searched(tiny: Path, cache_dir: Path) -> dict:
    """`python -m autodep.cli optimize tiny.pt`: its output and the result it cached."""
    command = [sys.executable, "-m", "autodep.cli", "optimize", str(tiny)]
    options = ["--optimize-budget", BUDGET, "--cache-dir", str(cache_dir)]
    done = subprocess.run(command + options, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr
    (entry,) = [p for p in cache_dir.iterdir() if (p / cache.RESULT).is_file()]
    return {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "result": json.loads((entry / cache.RESULT).read_text()),
    }


def _settings(cache_dir: Path, **more: object) -> dict:
    return {"optimize_budget": float(BUDGET), "cache_dir": cache_dir, **more}


def test_the_command_prints_every_candidate_and_writes_the_cache(searched):
    out = searched["stdout"]
    assert "| candidate" in out and "img/s b1" in out and "agreement" in out
    for name in NAMES:
        assert f"| {name} " in out
    assert "[1/" in searched["stderr"]  # progress, one line per candidate
    result = searched["result"]
    assert result["chosen"] in NAMES
    chosen = next(r for r in result["rows"] if r["name"] == result["chosen"])
    assert chosen["skipped"] is None
    table = [[cell.strip() for cell in line.split("|")[1:-1]] for line in out.splitlines()]
    marked = [cells[0] for cells in table if cells and cells[-1] == "yes"]
    assert marked == [result["chosen"]]
    assert "### serving plan: " in out and "| lone ms" in out  # then the plan it measured


def runner_up(result: dict) -> set[str]:
    """The variants the serving plan may choose: the search's choice and the next fastest at
    the largest batch that is no slower than the model as given (autodep.optimize.serving)."""
    rows = {r["name"]: r for r in result["rows"]}
    base = rows[AS_GIVEN]
    others = [
        r
        for r in result["rows"]
        if r["skipped"] is None
        and r["name"] != result["chosen"]
        and (
            r["name"] == AS_GIVEN
            or (r["img_s_1"] >= base["img_s_1"] and r["img_s_max"] >= base["img_s_max"])
        )
    ]
    best = max(others, key=lambda r: r["img_s_max"], default=None)
    return {result["chosen"]} | ({best["name"]} if best else set())


def test_the_chosen_variant_is_never_slower_than_the_model_as_given(searched):
    rows = {r["name"]: r for r in searched["result"]["rows"]}
    chosen, given = rows[searched["result"]["chosen"]], rows[AS_GIVEN]
    assert chosen["img_s_1"] >= given["img_s_1"]
    assert chosen["img_s_max"] >= given["img_s_max"]
    assert chosen["agreement"] >= 0.99


async def test_a_server_starts_from_the_cache_and_shows_its_variant(
    serve, tiny, cache_dir, searched
):
    server = await serve(tiny, optimize="auto", **_settings(cache_dir))
    _, status = await server.get("/status")
    variant = status["models"]["tiny"]["variant"]
    # The serving plan (measured through the pool) picks among the search's choice and the
    # runner-up.
    assert variant["name"] == status["models"]["tiny"]["plan"]["variant"]
    assert variant["name"] in runner_up(searched["result"])
    assert variant["from_cache"] is True  # no search on this start
    assert [c["name"] for c in variant["candidates"]] == [
        r["name"] for r in searched["result"]["rows"]
    ]
    assert {"name", "img_s", "agreement", "skipped"} <= set(variant["candidates"][0])
    async with server.session.get(server.url + "/metrics") as response:
        metrics = await response.text()
    assert f'autodep_model_variant{{model="tiny",variant="{variant["name"]}"}} 1.0' in metrics


async def test_optimized_predictions_match_the_model_as_given(serve, tiny, cache_dir, searched):
    optimized = await serve(tiny, optimize="auto", **_settings(cache_dir))
    given = await serve(tiny, optimize="off")
    _, status = await given.get("/status")
    assert status["models"]["tiny"]["variant"] == {
        "name": AS_GIVEN,
        "from_cache": False,
        "candidates": [],
    }
    _, status = await optimized.get("/status")
    # Float variants keep the probabilities; an int8 one (chosen where the CPU has an int8 path
    # and it measured fastest) is judged by its top-1 answers, as its gate judges it.
    tolerance = 0.25 if "int8" in status["models"]["tiny"]["variant"]["name"] else 0.02
    for color in RGB:
        for size in ((64, 48), (300, 200)):
            body = image_bytes(color, size=size)
            answers = [(await s.predict(body, "/predict?top_n=3"))[1] for s in (optimized, given)]
            first, second = (a["predictions"] for a in answers)
            assert first[0]["label"] == second[0]["label"]
            assert [p["score"] for p in first] == pytest.approx(
                [p["score"] for p in second], abs=tolerance
            )


async def test_a_named_candidate_is_served_when_it_passes_the_gate(
    serve, tiny, cache_dir, searched
):
    """OpenVINO f32 applies on every x86 CPU: compiled in the worker, from its model cache
    (the full search's, or its own search's if the full one ran out of budget before it)."""
    server = await serve(tiny, optimize="openvino-f32-latency", **_settings(cache_dir))
    _, status = await server.get("/status")
    variant = status["models"]["tiny"]["variant"]
    assert variant["name"] == "openvino-f32-latency"
    status_code, answer, _ = await server.predict(image_bytes("blue"))
    assert status_code == 200 and len(answer["predictions"]) == 3


def test_the_gate_rejects_a_candidate_that_changes_the_answers(tiny, tmp_path):
    job = job_for(
        model_from_file(tiny),
        threads=1,
        max_batch_size=4,
        budget_s=10,
        root=tmp_path,
        candidates="tests.optimize.candidates:WITH_BROKEN",
    )
    result = run(job)
    rows = {row.name: row for row in result.rows}
    assert (
        rows["reversed"].skipped is not None and "changes the answers" in rows["reversed"].skipped
    )
    assert rows["reversed"].agreement is not None and rows["reversed"].agreement < 0.99
    assert rows["failing"].skipped == "failed: RuntimeError: this converter cannot take the model"
    assert result.chosen == AS_GIVEN


def test_a_new_cpu_or_library_version_misses_the_cache(tiny, cache_dir, searched):
    model = model_from_file(tiny)
    settings = ServerConfig().settings_for(model)
    machine = this_machine()

    def key(machine: Machine) -> str:
        job = job_for(
            model,
            threads=settings.start_threads,
            max_batch_size=settings.max_batch_size,
            budget_s=float(BUDGET),
            root=cache_dir,
            machine=machine,
        )
        return job.key

    assert key(machine) == searched["result"]["key"]
    assert cache.lookup(cache_dir, key(machine)) is not None
    other_cpu = replace(machine, flags=(*(f for f in machine.flags if f != "avx2"), "zz"))
    other_torch = replace(
        machine, versions=tuple((n, "0.0" if n == "torch" else v) for n, v in machine.versions)
    )
    for changed in (other_cpu, other_torch, replace(machine, cpu="AMD EPYC 7B13")):
        assert key(changed) != key(machine)
        assert cache.lookup(cache_dir, key(changed)) is None


def test_bf16_candidates_apply_only_where_the_cpu_has_native_bf16():
    bf16 = [c for c in CANDIDATES if "native_bf16" in c.needs]
    assert {c.name for c in bf16} >= {"bf16-channels-last", "openvino-bf16-latency"}
    example = (((3, 224, 224), "float32"),)
    amx = Machine("Xeon", ("amx_bf16", "avx2", "avx512_bf16"), ())
    avx2 = Machine("EPYC", ("avx2", "fma"), ())
    for candidate in bf16:
        assert applies(candidate, Target("m.pt", "image", "classification", example, amx)) is None
        reason = applies(candidate, Target("m.pt", "image", "classification", example, avx2))
        assert reason is not None and "bf16" in reason


def test_the_choice_is_never_slower_than_the_model_as_given_at_either_batch_size():
    given = Row(AS_GIVEN, img_s_1=100, img_s_max=200, agreement=1.0)
    faster_under_load_only = Row("a", img_s_1=90, img_s_max=900, agreement=1.0)
    assert choose([given, faster_under_load_only], AS_GIVEN) == AS_GIVEN
    both = Row("b", img_s_1=150, img_s_max=300, agreement=1.0)
    fastest = Row("c", img_s_1=400, img_s_max=800, agreement=1.0)
    wrong = Row("d", img_s_1=4000, img_s_max=8000, agreement=0.5, skipped="changes the answers")
    assert choose([given, both, fastest, wrong], AS_GIVEN) == "c"
    assert choose([given, both], AS_GIVEN) == "b"


def test_the_gate_compares_each_output_kind_the_way_it_is_read():
    masks = [[np.zeros((4, 4), np.uint8)]]
    changed = [[np.eye(4, dtype=np.uint8)]]
    assert gate.judge("segmentation", masks, changed, 0.99).agreement == 0.75
    boxes = [[np.array([[0, 0, 10, 10]], np.float32), np.array([1]), np.array([0.9], np.float32)]]
    moved = [[np.array([[5, 5, 15, 15]], np.float32), np.array([1]), np.array([0.9], np.float32)]]
    assert gate.judge("detection", boxes, boxes, 0.99).passed
    assert not gate.judge("detection", boxes, moved, 0.99).passed
    raw = [[np.array([1.0, 2.0, 3.0], np.float32)]]
    assert gate.judge("raw", raw, [[raw[0][0] * 1.001]], 0.99).passed
    assert gate.judge("raw", raw, [[raw[0][0] * 2]], 0.99).agreement == 0.0


def test_the_optimize_settings_are_validated_where_they_are_written(tmp_path, tiny):
    (tmp_path / "tiny.pt").write_bytes(tiny.read_bytes())
    (tmp_path / "models.yaml").write_text(
        "models: [{name: tiny, path: tiny.pt, optimize: {mode: fastest}}]"
    )
    with pytest.raises(ConfigError, match=r"optimize\.mode"):
        load_repository(tmp_path / "models.yaml")
    (tmp_path / "models.yaml").write_text(
        "models: [{name: tiny, path: tiny.pt, optimize: {samples: nowhere, tolerance: 0.95}}]"
    )
    with pytest.raises(ConfigError, match=r"optimize\.samples: no such folder"):
        load_repository(tmp_path / "models.yaml")
    with pytest.raises(ConfigError, match="optimize"):
        build_config(optimize="fastest")


def test_the_gate_samples_come_from_the_samples_folder_else_from_the_decoder(tmp_path, tiny):
    folder = tmp_path / "samples"
    folder.mkdir()
    for color in RGB:
        (folder / f"{color}.jpg").write_bytes(image_bytes(color, size=(80, 60)))
    given = model_from_file(tiny)
    mine = given.model_copy(update={"optimize": Optimize(samples=folder)})
    assert [s[0].shape for s in samples(mine)] == [(3, 224, 224)] * 3
    made = samples(given)
    assert len(made) >= 10 and {s[0].shape for s in made} == {(3, 224, 224)}
    assert len({float(s[0].mean()) for s in made}) == len(made)  # all different pictures
