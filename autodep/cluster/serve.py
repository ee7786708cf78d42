"""`python -m autodep.serve --ray ADDRESS|auto ...`: serve on every node of a Ray cluster.

This process is the Ray driver: it starts one agent (with its HTTP front end)
per node, runs the controller's tick, and on SIGINT/SIGTERM shuts the nodes
down in order. Ray's token authentication is the cluster's: run this with
`RAY_AUTH_MODE=token` and the cluster's token (`RAY_AUTH_TOKEN` or
`RAY_AUTH_TOKEN_PATH`), as every node was started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping, Sequence

import ray

from autodep.cluster.controller import Controller
from autodep.config import ServerConfig
from autodep.errors import ConfigError

log = logging.getLogger("autodep")

READY_TIMEOUT_S = 120.0


async def serve_cluster(
    config: ServerConfig, address: str, placement: Mapping[str, Sequence[str]]
) -> int:
    unknown = sorted(set(placement) - {m.name for m in config.models})
    if unknown:
        raise ConfigError(f"cluster.placement names models that are not served: {unknown}")
    if os.environ.get("RAY_AUTH_MODE") != "token":
        log.warning("RAY_AUTH_MODE is not 'token': the Ray cluster may accept anyone's jobs")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)  # the handler only records the signal
    ray.init(address=address, logging_level=logging.WARNING)  # in the main thread: signals
    controller = Controller(config, placement)
    try:
        await controller.start()
        await controller.wait_ready(READY_TIMEOUT_S)
        log.info(
            "serving %s on %d nodes",
            ", ".join(m.name for m in config.models),
            len(controller.urls),
        )
        await stop.wait()
        log.info("shutting down")
        # 1-3. On every node: refuse new requests, finish queued work within the
        #      grace period, stop the workers, close the site; then end the agents.
        await controller.stop()
        return 0
    except (TimeoutError, ray.exceptions.RayError) as exc:
        log.error("could not start on the cluster: %s", exc)
        await controller.stop()
        return 1
    finally:
        # 4. Leave the cluster (the agents, owned by this driver, end with it).
        ray.shutdown()
        log.info("stopped")
