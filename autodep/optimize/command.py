"""`autodep optimize MODEL.pt ...` / `autodep optimize --config models.yaml`.

Searches each model's fastest variant on this machine (or reads it from the cache), then its
serving plan (measured through real workers, `autodep.optimize.serving`), prints both tables
and writes the cache that `serve --optimize auto` reads. It takes the serve command's flags,
since the worker count, threads and batch size are what is measured.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from autodep import serve
from autodep.config import ModelConfig, ServerConfig
from autodep.errors import ConfigError, OptimizeError, WorkerStartError
from autodep.optimize import plan as plans
from autodep.optimize.report import table
from autodep.optimize.resolve import Variant, resolve
from autodep.optimize.serving import find_plan
from autodep.pool.launcher import ProcessLauncher, stop_helpers


def main(argv: Sequence[str] | None = None, prog: str = "autodep optimize") -> int:
    parser = serve.build_parser(prog)
    parser.description = "Find the fastest form of each model on this machine that answers alike."
    parser.add_argument("models", nargs="*", metavar="MODEL", help="model files (.pt / .pt2)")
    args = parser.parse_args(argv)
    args.model = [*(args.model or []), *args.models] or None
    forced = args.optimize if args.optimize not in (None, "off") else "auto"
    args.optimize = forced
    try:
        config = serve.config_from_args(args)
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc.message}\n")
    status = 0
    for model in config.models:
        if model.optimize.mode == "off":
            print(f"{model.name}: optimize is off in its config entry\n")
            continue
        print(f"{model.name}: {model.path}", file=sys.stderr, flush=True)
        try:
            variant = resolve(model, config)
        except OptimizeError as exc:
            print(f"{model.name}: {exc.message}", file=sys.stderr)
            status = 1
            continue
        result = variant.result
        if result is None:
            print(f"{model.name}: {variant.note}\n")
            continue
        source = "from the cache" if variant.from_cache else f"searched in {result.search_s:.1f}s"
        print(
            f"## {model.name}: {variant.name}\n\n{result.machine}, {result.threads} thread(s) per"
            f" worker, batches of 1 and {result.max_batch_size}; {source}; cache entry"
            f" {variant.entry}\n\n{table(result, variant.name)}\n",
            flush=True,
        )
        try:
            plan = asyncio.run(_plan(model, config, variant))
        except (OptimizeError, WorkerStartError) as exc:
            print(f"{model.name}: no serving plan: {exc.message}", file=sys.stderr)
            status = 1
            continue
        if plan is not None:
            print(_describe(plan, config.given(model)), flush=True)
    stop_helpers()
    return status


async def _plan(model: ModelConfig, config: ServerConfig, variant: Variant) -> plans.Plan | None:
    """The model's serving plan, measured by workers of the forkserver (never in this process)."""
    launcher = ProcessLauncher()
    await asyncio.get_running_loop().run_in_executor(None, launcher.prepare)
    return await find_plan(model, config, variant, launcher)


def _describe(plan: plans.Plan, given: frozenset[str]) -> str:
    chosen = plan.chosen
    c = chosen.candidate
    cores = " ".join("{" + ",".join(map(str, own)) + "}" for own in chosen.cores)
    wins = f"; given settings win over it: {', '.join(sorted(given))}" if given else ""
    return (
        f"### serving plan: {c.variant}, {c.workers} worker(s) x {c.threads} thread(s) owning"
        f" cores {cores}, batches of up to {c.max_batch_size}, queue delay"
        f" {c.max_queue_delay_ms:g} ms: lone request {chosen.lone_ms:.2f} ms,"
        f" {chosen.saturated_rps:.1f} req/s at saturation (the plan search took"
        f" {plan.search_s:.1f}s){wins}\n\n{plans.table(plan)}\n"
    )
