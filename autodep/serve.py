"""`python -m autodep.serve`: serve models over HTTP until SIGINT or SIGTERM.

Every flag is a `ServerConfig` field and an environment variable: `--max-workers`
is `max_workers` and `AUTODEP_MAX_WORKERS`; its help and default come from the
field. `--model` (`AUTODEP_MODEL`, paths separated by `:`), `--labels` and
`--config` name what to serve.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from types import UnionType
from typing import Any, Union, get_args, get_origin

from aiohttp import web
from pydantic.fields import FieldInfo

from autodep import priority
from autodep.config import ENV_PREFIX, ServerConfig, from_environment, server_config
from autodep.errors import ConfigError, WorkerStartError
from autodep.grpc import GrpcServer
from autodep.http.app import build_app
from autodep.http.runner import JsonErrorsRunner
from autodep.pool.launcher import stop_helpers
from autodep.service import Service

log = logging.getLogger("autodep")

NOT_FLAGS = frozenset({"models", "repository"})  # set by --model, --labels and --config
# Each ServerConfig field that is a flag, by field name: "max_workers" -> "--max-workers".
FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in ServerConfig.model_fields
    if name not in NOT_FLAGS
}


def build_parser(prog: str = "python -m autodep.serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve PyTorch models over HTTP.")
    models = from_environment("model")
    parser.add_argument(
        "--model",
        action="append",
        default=models.split(":") if models else None,
        help="a TorchScript file to serve, named by its file stem (repeatable)",
    )
    parser.add_argument(
        "--labels",
        default=from_environment("labels"),
        help="class labels, one per line, for the --model",
    )
    parser.add_argument(
        "--config", default=from_environment("config"), help="model repository YAML"
    )
    add_settings(parser, FLAGS)
    return parser


def add_settings(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """A flag for each of these ServerConfig fields, its type and help read from the field."""
    for name in names:
        field = ServerConfig.model_fields[name]
        # Unset flags stay None: ServerConfig then reads AUTODEP_<NAME>, else its default.
        if field.annotation is bool:  # a switch: alone means on; `--flag off` still reads
            parser.add_argument(
                FLAGS[name], nargs="?", const="true", dest=name, help=_help(name, field)
            )
        else:
            parser.add_argument(
                FLAGS[name], type=_scalar(field), dest=name, help=_help(name, field)
            )


def given_settings(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The settings among `names` given as flags."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _scalar(field: FieldInfo) -> type:
    """The flag's argparse type: the field's int or float (None left out), else str."""
    kinds = get_args(field.annotation) if _is_union(field.annotation) else (field.annotation,)
    for kind in kinds:
        if kind in (int, float):
            return kind  # type: ignore[no-any-return]
    return str


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType)


def _help(name: str, field: FieldInfo) -> str:
    """The field's description, its default unless the description says it, its variable."""
    text = field.description or ""
    default = field.get_default()
    if default is not None and "default" not in text:
        text += f" (default {default})"
    return f"{text} [{ENV_PREFIX}{name.upper()}]"


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The whole config, built once: the flags given, else the environment, else defaults."""
    if not args.model and not args.config:
        raise ConfigError("nothing to serve: give --model PATH or --config models.yaml")
    given = given_settings(args, FLAGS)
    return server_config(args.model, args.labels, args.config, **given)


async def serve(config: ServerConfig) -> int:
    """Run until a signal, then shut down in order. Returns the exit code.

    Each resource is pushed on one exit stack as it is made, so whatever happens
    (a signal, a port in use, workers that cannot start) the same steps unwind,
    in reverse: the numbers below are the order in which they run.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)  # the handler only records the signal
    async with AsyncExitStack() as unwind:
        # 5. Stop the forkserver and the resource tracker: exit only after every child.
        unwind.push_async_callback(_stop_helpers)
        service = Service(config=config)
        runner = JsonErrorsRunner(build_app(service), handle_signals=False, access_log=None)
        await runner.setup()
        # 4. Close the listening sockets and the idle connections (HTTP last: gRPC first).
        unwind.push_async_callback(runner.cleanup)
        grpc_server = None if config.grpc_port is None else GrpcServer(service)
        if grpc_server is not None:
            unwind.push_async_callback(grpc_server.stop, 1)
        try:
            await service.start()
        except WorkerStartError as exc:
            log.error("could not start: %s", exc)
            return 1
        if config.server_nice:

            def overflowed() -> int:
                return sum(pool.overflowed for pool in service.repository.pools().values())

            yielding = asyncio.ensure_future(
                priority.yield_when_overloaded(overflowed, config.server_nice, config.tick / 2)
            )
            unwind.callback(yielding.cancel)
        serving = False

        async def shut_down() -> None:
            # 1-3. Refuse new requests (503 / UNAVAILABLE), finish queued work within the
            #      grace period (none if it never served), stop the workers.
            await service.shutdown(None if serving else 0)

        unwind.push_async_callback(shut_down)
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror)
            return 1
        host, port = runner.addresses[0][:2]
        log.info("serving %s on http://%s:%s", ", ".join(service.models), host, port)
        if grpc_server is not None:
            try:
                grpc_port = await grpc_server.start(config.host, config.grpc_port or 0)
            except OSError as exc:
                log.error("%s", exc)
                return 1
            log.info("serving the V2 protocol over gRPC on %s:%s", config.host, grpc_port)
        serving = True
        await stop.wait()
        log.info("shutting down")
    return 0


async def _stop_helpers() -> None:
    await asyncio.get_running_loop().run_in_executor(None, stop_helpers)
    log.info("stopped")


def main(argv: Sequence[str] | None = None, prog: str = "python -m autodep.serve") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        logging.basicConfig(
            level=config.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
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
