"""`python -m autodep.serve`: serve models over HTTP until SIGINT or SIGTERM.

Every flag is also an environment variable: `--max-workers` is
`AUTODEP_MAX_WORKERS`, and so on (`AUTODEP_MODEL` takes paths separated by `:`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from autodep.config import ServerConfig
from autodep.embedding import Autodep
from autodep.errors import ConfigError, WorkerStartError
from autodep.grpc import GrpcServer
from autodep.pool.launcher import stop_helpers

log = logging.getLogger("autodep")

# (flag, type, help); the config field is the flag's name with underscores. A bool flag
# alone means true; `--flag false` (or AUTODEP_FLAG=false) is parsed by the config.
SETTINGS: list[tuple[str, type, str]] = [
    ("--host", str, "address to listen on (default 127.0.0.1; with --ray, node: each node's own)"),
    ("--port", int, "port to listen on (default 8000; 0 picks a free one)"),
    ("--max-workers", int, "most worker processes per model (default: cores)"),
    ("--min-workers", int, "fewest workers kept alive per model (default 1)"),
    ("--threads-per-worker", int, "torch threads per worker (default cores / max-workers)"),
    ("--max-queue", int, "requests waiting per model before 503 (default 64)"),
    (
        "--max-items-per-request",
        int,
        "items (V2 elements or rows) one request may hold (default: the --max-queue)",
    ),
    ("--idle-timeout", float, "seconds before an idle worker above min-workers stops (default 30)"),
    ("--max-body", int, "request body limit in bytes (default 16 MiB)"),
    ("--request-timeout", float, "seconds before a request is answered 504 (default 60)"),
    ("--grace-period", float, "seconds to finish queued work at shutdown (default 30)"),
    ("--max-batch-size", int, "most requests per model call (default 8; 1 turns batching off)"),
    ("--max-queue-delay-ms", float, "how long a batch may wait to fill up (default 0)"),
    ("--max-total-workers", int, "workers of all models together (default: cores)"),
    ("--target-utilisation", float, "busy share of a worker the autoscaler aims at (default 0.8)"),
    ("--upscale-window", float, "seconds of traffic that scaling up looks at (default 2)"),
    ("--tick", float, "seconds between autoscaling decisions (default 1)"),
    ("--auth-token", str, "a bearer token every route but /v2/health/* then needs"),
    ("--auth-token-file", str, "a file holding the bearer token (instead of --auth-token)"),
    ("--optimize", str, "auto (cached, else search first), off, or a candidate's name"),
    ("--optimize-budget", float, "seconds a model's optimization search may take (default 300)"),
    ("--cache-dir", str, "where optimization results are kept (default ~/.cache/autodep)"),
    (
        "--model-control-mode",
        str,
        "none | explicit (the /v2/repository load and unload routes) | poll (watch the files)",
    ),
    ("--repository-poll-s", float, "seconds between looks at the files in poll mode (default 2)"),
    ("--grpc-port", int, "also serve the V2 protocol over gRPC on this port (0: a free one)"),
    ("--ray", str, "serve on every node of this Ray cluster: its address, or auto (autodep[ray])"),
    (
        "--trust-pt2-pickles",
        bool,
        "load .pt2 files that carry pickled objects or shared libraries: code that runs at "
        "load (default off: such files are refused)",
    ),
]


def _env(flag: str) -> str | None:
    return os.environ.get("AUTODEP_" + flag.lstrip("-").replace("-", "_").upper())


def build_parser(prog: str = "python -m autodep.serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve PyTorch models over HTTP.")
    models = _env("--model")
    parser.add_argument(
        "--model",
        action="append",
        default=models.split(":") if models else None,
        help="a TorchScript file to serve, named by its file stem (repeatable)",
    )
    parser.add_argument(
        "--labels", default=_env("--labels"), help="class labels, one per line, for the --model"
    )
    parser.add_argument("--config", default=_env("--config"), help="model repository YAML")
    for flag, kind, help_text in SETTINGS:
        if kind is bool:
            parser.add_argument(flag, nargs="?", const="true", default=_env(flag), help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=_env(flag), help=help_text)
    parser.add_argument(
        "--log-level", default=_env("--log-level") or "INFO", help="logging level (default INFO)"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    if not args.model and not args.config:
        raise ConfigError("nothing to serve: give --model PATH or --config models.yaml")
    settings: dict[str, Any] = {}
    for flag, kind, _ in SETTINGS:
        name = flag.lstrip("-").replace("-", "_")
        value = getattr(args, name)
        if value is not None:
            settings[name] = value if kind is bool else kind(value)
    return Autodep(args.model, labels=args.labels, repository=args.config, **settings).config


async def serve(config: ServerConfig) -> int:
    """Run until a signal, then shut down in order. Returns the exit code."""
    try:
        return await _serve(config)
    finally:
        # 5. Stop the forkserver and the resource tracker: exit only after every child.
        await asyncio.get_running_loop().run_in_executor(None, stop_helpers)
        log.info("stopped")


async def _serve(config: ServerConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)  # the handler only records the signal
    service = Autodep(config=config)
    try:
        await service.start()
    except WorkerStartError as exc:
        log.error("could not start: %s", exc)
        return 1
    runner = web.AppRunner(service.app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror)
        await service.shutdown(0)
        await runner.cleanup()
        return 1
    host, port = runner.addresses[0][:2]
    log.info("serving %s on http://%s:%s", ", ".join(service.models), host, port)
    grpc_server = None
    if config.grpc_port is not None:
        grpc_server = GrpcServer(service)
        try:
            grpc_port = await grpc_server.start(config.host, config.grpc_port)
        except OSError as exc:
            log.error("%s", exc)
            await service.shutdown(0)
            await runner.cleanup()
            return 1
        log.info("serving the V2 protocol over gRPC on %s:%s", config.host, grpc_port)
    await stop.wait()
    log.info("shutting down")
    # 1-3. Refuse new requests (503 / UNAVAILABLE), finish queued work within the
    #      grace period, stop the workers (Autodep.shutdown).
    await service.shutdown()
    # 4. Close the listening sockets and the idle connections.
    if grpc_server is not None:
        await grpc_server.stop(grace=1)
    await runner.cleanup()
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m autodep.serve") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_from_args(args)
        if args.config is not None:
            # Reads YAML only; Ray is imported below, and only for a cluster.
            from autodep.cluster.config import load_cluster_section

            cluster = load_cluster_section(args.config)
            config = config.model_copy(update={"ray": config.ray or cluster.ray})
        if config.ray is not None:
            try:
                from autodep.cluster.serve import serve_cluster
            except ImportError as exc:
                raise ConfigError(f"--ray needs Ray: pip install 'autodep[ray]' ({exc})") from None
            placement = cluster.placement if args.config is not None else {}
            return asyncio.run(serve_cluster(config, config.ray, placement))
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc.message}\n")
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
