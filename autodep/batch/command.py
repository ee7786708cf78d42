"""`autodep batch --model M --input SRC --output DST`: a whole data set through a model.

Builds the same `Service` as the server (codecs, pool, batching, optimized
variant) in this process, feeds it every item of SRC through `run.map_items`
(with --ray: to the cluster mode's agents on every node, autodep.batch.cluster)
and appends each result to DST/results.jsonl as it finishes. A rerun skips the
keys already there. Exit 0 when the job finished (failed items included),
1 when the model could not start, 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from autodep.batch.items import Input, Result
from autodep.batch.results import ResultLog
from autodep.batch.run import map_items
from autodep.batch.sources import list_inputs
from autodep.codecs import Options
from autodep.config import ModelConfig, ServerConfig, store_of
from autodep.errors import ConfigError
from autodep.optimize.cache import root as cache_root
from autodep.pool.launcher import stop_helpers
from autodep.serve import add_settings, given_settings
from autodep.service import Service
from autodep.storage.refs import is_remote

log = logging.getLogger("autodep.batch")

# The server's settings that matter offline (their flags as `autodep serve` has them).
SETTINGS = (
    "max_workers", "min_workers", "threads_per_worker", "max_queue", "max_body",
    "request_timeout", "max_batch_size", "max_queue_delay_ms", "max_total_workers",
    "optimize", "optimize_budget", "optimize_int8", "cache_dir", "s3_endpoint", "ray",
)  # fmt: skip


def build_parser(prog: str = "autodep batch") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a model over every item of a folder, JSON Lines file or bucket."
    )
    parser.add_argument("--model", help="a TorchScript file or s3:// object (or --config)")
    parser.add_argument("--labels", help="class labels, one per line, for the --model")
    parser.add_argument("--config", help="model repository YAML (then --name picks the model)")
    parser.add_argument("--name", help="the model of --config to run (default: the only one)")
    parser.add_argument(
        "--input", required=True, help="a folder, a .jsonl file, or s3://bucket/prefix/"
    )
    parser.add_argument(
        "--output", required=True, help="a folder or s3://bucket/prefix/ for results.jsonl"
    )
    parser.add_argument("--top-n", type=int, default=5, help="classes per result (default 5)")
    parser.add_argument("--threshold", type=float, default=0.5, help="detection threshold (0.5)")
    parser.add_argument("--concurrency", type=int, help="items in flight (default: the queue)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    add_settings(parser, SETTINGS)
    return parser


def make_service(args: argparse.Namespace) -> Service:
    if not args.model and not args.config:
        raise ConfigError("nothing to run: give --model PATH or --config models.yaml")
    if args.top_n < 1 or not 0 <= args.threshold <= 1:
        raise ConfigError("--top-n must be at least 1 and --threshold between 0 and 1")
    settings = given_settings(args, SETTINGS)
    # Offline there is no traffic to scale with: every worker from the start.
    settings.setdefault("min_workers", settings.get("max_workers", 10**6))
    # A job runs once: every item through the variant the search chooses (a search in the
    # background would serve part of it as given, and compete with it for the cores).
    settings["optimize_wait"] = True
    if "ray" in settings:
        settings["port"] = 0  # each node's agent brings its HTTP front end: on a free port
    service = Service(args.model, labels=args.labels, repository=args.config, **settings)
    names = [m.name for m in service.config.models]
    if args.name is None and len(names) > 1:
        raise ConfigError(f"--config has several models ({', '.join(names)}): pick one with --name")
    if args.name is not None and args.name not in names:
        raise ConfigError(f"--name {args.name}: no such model; there are {', '.join(names)}")
    return service


def main(argv: Sequence[str] | None = None, prog: str = "autodep batch") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        service = make_service(args)
        engine = _engine(service, args)
        store = store_of(service.config)
        output = None if is_remote(args.output) else Path(args.output)
        items = list_inputs(args.input, lambda: store.s3, exclude=output)
        results = ResultLog(args.output, store.s3, cache_root(service.config.cache_dir))
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc.message}\n")
    return asyncio.run(_run(engine, args, items, results))


class Engine(Protocol):
    """Where the items run: this host's pools, or a Ray cluster's nodes."""

    async def start(self) -> None: ...
    def map(self, items: list[Input], args: argparse.Namespace) -> AsyncIterator[Result]: ...
    async def stop(self) -> None: ...


class _Here:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def start(self) -> None:
        await self.service.start()

    def map(self, items: list[Input], args: argparse.Namespace) -> AsyncIterator[Result]:
        return map_items(
            self.service, items, model=args.name, top_n=args.top_n,
            threshold=args.threshold, concurrency=args.concurrency,
        )  # fmt: skip

    async def stop(self) -> None:
        await self.service.shutdown(grace_period=5)
        await asyncio.get_running_loop().run_in_executor(None, stop_helpers)


class _OnCluster:
    def __init__(
        self, config: ServerConfig, model: ModelConfig, placement: Mapping[str, Sequence[str]]
    ) -> None:
        from autodep.batch.cluster import ClusterBatch  # Ray is imported only for a cluster

        assert config.ray is not None
        self.model = model
        self.batch = ClusterBatch(config, config.ray, placement)

    async def start(self) -> None:
        await self.batch.start()

    def map(self, items: list[Input], args: argparse.Namespace) -> AsyncIterator[Result]:
        options = Options(top_n=args.top_n, threshold=args.threshold)
        return self.batch.map(items, self.model, options, args.concurrency)

    async def stop(self) -> None:
        await self.batch.stop()


def _engine(service: Service, args: argparse.Namespace) -> Engine:
    config = service.config
    if config.ray is None:
        return _Here(service)
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--ray needs Ray: pip install 'autodep[ray]'")
    from autodep.cluster.config import load_cluster_section

    model = next(m for m in config.models if args.name in (None, m.name))
    return _OnCluster(config, model, load_cluster_section(args.config).placement)


async def _run(
    engine: Engine, args: argparse.Namespace, items: list[Input], results: ResultLog
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)  # the handler only records the signal
    started = time.monotonic()
    finished_before = results.open()
    todo = [item for item in items if item.key not in finished_before]
    counts: Counter[str] = Counter(skipped=len(items) - len(todo))
    first: list[float] = []
    interrupted = False
    ready = ended = started
    try:
        if todo:
            try:
                await engine.start()
            except Exception as exc:  # a worker, or a cluster node (Ray's errors), failed
                log.error("could not start the model: %s", exc)
                return 1
            ready = time.monotonic()
            interrupted = await _until_done_or_stopped(
                _consume(engine.map(todo, args), results, counts, first, len(items), args), stop
            )
            ended = time.monotonic()
    finally:
        results.close()
        await engine.stop()
    ran = counts["done"] + counts["failed"]
    rate = ran / max(ended - ready, 1e-9)
    first_s = f"; first result {first[0] - started:.2f} s after the start" if first else ""
    print(
        f"{'interrupted' if interrupted else 'finished'}: {counts['done']} done, "
        f"{counts['failed']} failed, {counts['skipped']} skipped in "
        f"{time.monotonic() - started:.1f} s ({rate:.1f} items/s once ready{first_s}); "
        f"results in {results.location}",
        file=sys.stderr,
    )
    return 130 if interrupted else 0


async def _until_done_or_stopped(job: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run the job until it ends or a signal comes; True if it was stopped."""
    running = asyncio.create_task(job)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    interrupted = not running.done()
    for task in (running, stopped):
        task.cancel()
    await asyncio.gather(running, stopped, return_exceptions=True)
    if not interrupted:
        running.result()  # an unexpected failure of the job itself
    return interrupted


async def _consume(
    results_of: AsyncIterator[Result],
    results: ResultLog,
    counts: Counter[str],
    first: list[float],
    total: int,
    args: argparse.Namespace,
) -> None:
    with tqdm(
        total=total, initial=counts["skipped"], unit="item", disable=args.no_progress,
        file=sys.stderr, smoothing=0.1,
    ) as bar:  # fmt: skip
        async for result in results_of:
            if not first:
                first.append(time.monotonic())
            results.write(result)
            counts["done" if result.ok else "failed"] += 1
            bar.update()
