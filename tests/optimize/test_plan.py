"""The serving plan: the pure choice on synthetic measurements, and plans measured through real
workers, cached next to the variant, shown in /status, overruled by explicit settings.

Nothing here depends on which plan wins on this machine: only on what was measured and kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autodep.config import build_config, model_from_file
from autodep.optimize.plan import PLAN, Measurement, PlanCandidate, apply, choose, grid
from autodep.pool.cores import host_cores
from tests import models
from tests.support.images import image_bytes

pytestmark = pytest.mark.timeout(240)
BUDGET = 20.0  # seconds of search: each plan phase is measured for 0.2 s


def measured(workers: int, lone_ms: float, rps: float, delay: float = 0.0) -> Measurement:
    candidate = PlanCandidate("v", workers, 4 // workers, 8, delay)
    return Measurement(candidate, ((0,),) * workers, lone_ms, rps, workers * 16)


def test_the_plan_balances_the_lone_request_and_the_saturated_rate():
    one, two, four = measured(1, 10.0, 100.0), measured(2, 11.0, 150.0), measured(4, 30.0, 160.0)
    assert choose([one, two, four]) == two  # four workers: 3x slower alone for 7% more
    assert choose([one, measured(2, 20.0, 150.0)]) == one  # 2x slower alone for 1.5x the rate
    assert choose([one, measured(2, 12.0, 800.0)]).candidate.workers == 2  # 8x the rate
    assert choose([measured(2, 10.0, 102.0), one]) == one  # a tie (within 3%): fewer workers
    assert choose([measured(1, 10.0, 101.0, delay=2.0), one]) == one  # ... then no queue delay
    assert choose([measured(1, 10.0, 110.0, delay=2.0), one]).candidate.max_queue_delay_ms == 2
    with pytest.raises(ValueError):
        choose([])


def test_the_grid_shares_the_cores_out_evenly():
    plans = grid(["a", "b"], 4, 8)
    shares = {(p.workers, p.threads) for p in plans}
    assert shares == {(1, 4), (2, 2), (4, 1)}
    assert {p.variant for p in plans} == {"a", "b"} and {p.max_batch_size for p in plans} == {4, 8}
    assert len(grid(["a"], 2, 1)) == 2 * 1 * 2  # batching off: one batch size


def test_explicit_settings_win_over_the_plan(tmp_path):
    path = models.save(models.ColorNet(), tmp_path / "m.pt")
    model = model_from_file(path)
    plan = _plan(measured(2, 5.0, 50.0, delay=2.0))
    defaults = build_config(models=(model,))
    settings = apply(plan, defaults.settings_for(model), defaults.given(model))
    assert (settings.max_workers, settings.max_batch_size, settings.max_queue_delay) == (
        2,
        8,
        0.002,
    )
    flags = build_config(models=(model,), max_workers=3, max_queue_delay_ms=0.0)
    assert flags.given(model) == {"max_workers", "max_queue_delay"}
    settings = apply(plan, flags.settings_for(model), flags.given(model))
    assert (settings.max_workers, settings.max_queue_delay) == (3, 0.0)
    entry = type(model).model_validate({**model.model_dump(), "batching": {"max_batch_size": 2}})
    assert defaults.given(entry) == {"max_batch_size"}
    assert apply(plan, defaults.settings_for(entry), defaults.given(entry)).max_batch_size == 2


def test_a_setting_from_its_environment_variable_is_given_like_its_flag(tmp_path, monkeypatch):
    model = model_from_file(models.save(models.ColorNet(), tmp_path / "m.pt"))
    monkeypatch.setenv("AUTODEP_THREADS_PER_WORKER", "1")
    monkeypatch.setenv("AUTODEP_MAX_BATCH_SIZE", "4")
    config = build_config(models=(model,))
    assert config.given(model) == {"threads", "max_batch_size"}
    settings = apply(_plan(measured(2, 5.0, 50.0)), config.settings_for(model), config.given(model))
    assert (settings.threads, settings.max_batch_size) == (1, 4)


def _plan(chosen: Measurement):
    from autodep.optimize.plan import Plan

    return Plan({}, chosen, (chosen,), 1.0)


@pytest.fixture(scope="module")
def color(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.save(models.ColorNet(), tmp_path_factory.mktemp("plan") / "colors.pt")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def settings(cache_dir: Path, **more: object) -> dict:
    # `as-given`: a search of the model as given alone, so that the test's time goes to the plan.
    return {"optimize": "as-given", "optimize_budget": BUDGET, "cache_dir": cache_dir, **more}


async def test_a_plan_is_measured_through_the_pool_cached_and_shown(serve, color, cache_dir):
    server = await serve(color, **settings(cache_dir))
    _, body = await server.get("/status")
    plan = body["models"]["colors"]["plan"]
    cores = host_cores()
    assert plan["source"] == "measured" and plan["given"] == []
    assert len(plan["measurements"]) == len(grid(["as-given"], len(cores), 8))
    [chosen] = [m for m in plan["measurements"] if m["chosen"]]
    assert plan["workers"] == chosen["workers"]
    assert plan["max_batch_size"] == chosen["max_batch_size"] in (4, 8)
    assert plan["threads_per_worker"] == len(cores) // chosen["workers"]
    assert plan["lone_request_cores"] == list(cores)  # a lone request uses every core
    assert plan["max_queue_delay_ms"] == chosen["max_queue_delay_ms"]
    for m in plan["measurements"]:
        assert m["lone_ms"] > 0 and m["saturated_rps"] > 0
        owned = [set(c) for c in m["cores"]]  # while measured, each worker owned its own cores
        assert len(owned) == m["workers"] and set().union(*owned) == set(cores)
        assert sum(map(len, owned)) == len(cores)
    # The live workers own disjoint cores too.
    live = [set(c) for c in plan["cores"]]
    assert sum(map(len, live)) == len(set().union(*live))
    assert (await server.predict(image_bytes("green")))[1]["predictions"][0]["label"] == "green"
    [entry] = [p for p in cache_dir.iterdir() if (p / PLAN).is_file()]
    written = (entry / PLAN).stat().st_mtime_ns

    # The next start reads it from the cache; explicit settings win over it. (A given batch
    # size would change what the variant search measures, hence its cache key: `apply` is
    # tested for it above.)
    again = await serve(color, **settings(cache_dir, max_queue_delay_ms=7.0))
    plan_again = (await again.get("/status"))[1]["models"]["colors"]["plan"]
    assert (entry / PLAN).stat().st_mtime_ns == written
    assert plan_again["measurements"] == plan["measurements"]
    assert plan_again["given"] == ["max_queue_delay"]
    assert plan_again["max_queue_delay_ms"] == 7.0
    assert (plan_again["workers"], plan_again["max_batch_size"]) == (
        chosen["workers"],
        chosen["max_batch_size"],
    )
    assert json.loads((entry / PLAN).read_text())["chosen"]["candidate"] == {
        k: chosen[k] for k in ("variant", "workers", "threads", "max_batch_size")
    } | {"max_queue_delay_ms": chosen["max_queue_delay_ms"]}
    # A given worker count with one thread each: the variant search measured one thread per
    # worker by default too, so the same cache entry (and plan) holds, and the flags win.
    flags = await serve(color, **settings(cache_dir, max_workers=1, threads_per_worker=1))
    plan_flags = (await flags.get("/status"))[1]["models"]["colors"]["plan"]
    assert (entry / PLAN).stat().st_mtime_ns == written
    assert plan_flags["given"] == ["max_workers", "threads"]
    assert (plan_flags["workers"], plan_flags["threads_per_worker"]) == (1, 1)
    assert plan_flags["source"] == "measured" and plan_flags["lone_request_cores"] == []
    assert len(plan_flags["cores"]) == 1 and len(plan_flags["cores"][0]) == 1


async def test_without_the_optimizer_there_is_no_plan_search(serve, color):
    server = await serve(color, optimize="off")
    plan = (await server.get("/status"))[1]["models"]["colors"]["plan"]
    assert plan["source"] == "defaults" and plan["measurements"] == []
    assert plan["workers"] == len(host_cores())
    assert plan["lone_request_cores"] == list(host_cores())
    fixed = await serve(color, optimize="off", threads_per_worker=1)
    plan = (await fixed.get("/status"))[1]["models"]["colors"]["plan"]
    assert plan["lone_request_cores"] == [] and plan["given"] == ["threads"]
