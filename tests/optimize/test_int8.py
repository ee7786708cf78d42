"""int8 candidates: calibrated on inputs the gate never judges them on, served only if they keep
the answers, applying only where the CPU has an int8 path.

The searches here run the int8 candidates for real (NNCF, ONNX Runtime's quantizer) on tiny
models, so they are skipped on a CPU without an int8 path; the pure parts run everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from autodep.config import Optimize, ServerConfig, load_repository, model_from_file
from autodep.optimize.candidates import AS_GIVEN, CANDIDATES, Target, applies
from autodep.optimize.cpu import Machine, this_machine
from autodep.optimize.samples import CALIBRATION_INPUTS, calibration_for, samples
from autodep.optimize.search import import_candidates, job_for, run
from autodep.serve import build_parser, config_from_args
from tests import models
from tests.support.images import RGB, image_bytes

pytestmark = pytest.mark.timeout(240)
INT8 = tuple(c.name for c in CANDIDATES if "int8" in c.needs)
needs_int8_path = pytest.mark.skipif(
    not this_machine().int8_paths,
    reason="this CPU has no int8 path (amx_int8 / avx512_vnni / avx_vnni): int8 does not apply",
)
EXAMPLE = (((3, 224, 224), "float32"),)


def _colour_folder(folder: Path, shades: int) -> Path:
    """Pictures of one clear colour each, all different: every colour in `shades` shades."""
    folder.mkdir()
    for colour, rgb in RGB.items():
        for i in range(shades):
            body = _picture(tuple(int(c * (1 - 0.08 * i)) for c in rgb), (64 + 8 * i, 48))
            (folder / f"{colour}-{i}.png").write_bytes(body)
    return folder


def _picture(rgb: tuple[int, ...], size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, "PNG")
    return buffer.getvalue()


def test_int8_candidates_apply_only_where_the_cpu_has_an_int8_path():
    assert INT8  # OpenVINO's and ONNX Runtime's
    paths = {
        "amx_int8": Machine("Xeon", ("amx_bf16", "amx_int8", "avx512_vnni"), ()),
        "avx512_vnni": Machine("EPYC", ("avx2", "avx512_vnni"), ()),
        "avx_vnni": Machine("Core", ("avx2", "avx_vnni"), ()),
    }
    plain = Machine("EPYC", ("avx2", "fma"), ())
    assert paths["amx_int8"].int8_paths == ("amx_int8", "avx512_vnni")  # fastest first
    for candidate in (c for c in CANDIDATES if c.name in INT8):
        assert candidate.calibrated
        for machine in paths.values():
            target = Target("m.pt", "image", "classification", EXAMPLE, machine)
            assert applies(candidate, target) is None
        reason = applies(candidate, Target("m.pt", "image", "classification", EXAMPLE, plain))
        assert reason is not None and "no int8 path" in reason
        text = Target("m.pt", "text", "classification", EXAMPLE, paths["avx_vnni"])
        assert applies(candidate, text) is not None


def test_calibration_never_includes_a_sample_the_int8_gate_judges(tmp_path):
    tiny = models.save(models.ColorConvNet(), tmp_path / "colours.pt")
    generated = model_from_file(tiny)
    gate, made = samples(generated), calibration_for(generated, len(samples(generated)))
    assert len(made.inputs) == CALIBRATION_INPUTS and made.held_out == tuple(range(len(gate)))
    assert "generated" in made.note()
    assert not any(np.array_equal(c[0], g[0]) for c in made.inputs for g in gate)

    folder = _colour_folder(tmp_path / "samples", 4)  # 12 files
    mine = generated.model_copy(update={"optimize": Optimize(samples=folder)})
    gate = samples(mine)
    split = calibration_for(mine, len(gate))
    assert len(split.inputs) == 6 and len(split.held_out) == 6
    assert "6 of the 12 files" in split.note() and "6 held-out" in split.note()
    held = [gate[i][0] for i in split.held_out]
    calibrated = [gate[i][0] for i in range(len(gate)) if i not in split.held_out]
    assert all(any(np.array_equal(c[0], g) for g in calibrated) for c in split.inputs)
    assert not any(np.array_equal(c[0], h) for c in split.inputs for h in held)


def test_int8_can_be_switched_off_and_its_search_is_another_cache_entry(tmp_path):
    tiny = models.save(models.ColorConvNet(), tmp_path / "colours.pt")
    model = model_from_file(tiny)
    with_int8, without = (
        job_for(model, threads=1, max_batch_size=4, budget_s=10, root=tmp_path, int8=flag)
        for flag in (True, False)
    )
    assert with_int8.key != without.key
    names = {c.name for c in import_candidates(without.candidates, int8=False)}
    assert AS_GIVEN in names and not names & set(INT8)
    # A candidate named on its own is searched even so.
    alone = import_candidates(without.candidates, "openvino-int8-latency", int8=False)
    assert [c.name for c in alone] == [AS_GIVEN, "openvino-int8-latency"]
    args = build_parser().parse_args(["--model", str(tiny), "--optimize-int8", "off"])
    config = config_from_args(args)
    assert config.optimize_int8 is False and config.int8_for(config.models[0]) is False
    assert config.model_copy(update={"optimize_int8": True}).int8_for(config.models[0])
    (tmp_path / "models.yaml").write_text(
        "models: [{name: colours, path: colours.pt, optimize: {int8: false}}]"
    )
    (entry,) = load_repository(tmp_path / "models.yaml")
    assert ServerConfig(models=(entry,)).int8_for(entry) is False  # the entry wins


@needs_int8_path
def test_an_int8_form_that_changes_the_answers_is_skipped_and_a_float_one_chosen(tmp_path):
    fragile = models.save(models.FragileNet(), tmp_path / "fragile.pt")
    job = job_for(
        model_from_file(fragile),
        threads=1,
        max_batch_size=4,
        budget_s=120,
        root=tmp_path / "cache",
        candidates="tests.optimize.candidates:INT8_AND_FLOAT",
    )
    result = run(job)
    rows = {row.name: row for row in result.rows}
    for name in ("openvino-int8-latency", "onnxruntime-int8"):
        row = rows[name]
        assert row.skipped is not None and row.skipped.startswith("changes the answers"), row
        assert row.agreement is not None and row.agreement < 0.99
        assert row.max_diff is not None and row.max_diff > 0.1
        assert row.note == "calibrated on 64 generated inputs; gated on 16 held-out samples"
    assert rows["openvino-f32-latency"].skipped is None  # the float forms keep the answers
    assert rows["onnxruntime"].skipped is None
    assert result.chosen in (AS_GIVEN, "openvino-f32-latency", "onnxruntime")


@needs_int8_path
async def test_an_int8_form_that_keeps_the_answers_is_served_and_answers_alike(serve, tmp_path):
    net = models.save(models.ColorConvNet(), tmp_path / "colours.pt")
    folder = _colour_folder(tmp_path / "samples", 6)  # 18 files
    repository = tmp_path / "models.yaml"
    labels = str(net.with_name("colours.labels.txt"))
    entry = {"name": "colours", "path": str(net), "labels": labels}
    entry["optimize"] = {"samples": str(folder)}
    repository.write_text(yaml.safe_dump({"models": [entry]}))
    cache = tmp_path / "cache"
    int8 = await serve(
        repository=repository,
        optimize="openvino-int8-latency",
        cache_dir=cache,
        optimize_budget=120,
    )
    given = await serve(repository=repository, optimize="off")
    _, status = await int8.get("/status")
    variant = status["models"]["colours"]["variant"]
    assert variant["name"] == "openvino-int8-latency"
    row = next(c for c in variant["candidates"] if c["name"] == "openvino-int8-latency")
    assert row["skipped"] is None and row["agreement"] == 1.0
    assert (
        row["note"] == f"calibrated on 9 of the 18 files in {folder}; gated on 9 held-out samples"
    )
    for colour in RGB:  # fresh pictures: other sizes than the samples
        for size in ((33, 77), (300, 200)):
            body = image_bytes(colour, size=size)
            answers = [(await s.predict(body))[1]["predictions"] for s in (int8, given)]
            assert answers[0][0]["label"] == answers[1][0]["label"] == colour
