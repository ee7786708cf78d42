"""The worker process: loads one model and runs batches sent by the server.

The server imports only this package's light modules (`spec`) and the entry
below: torch is imported by the forkserver and the workers, never by the
server, which keeps the server quick to start and free of torch threads.
"""

from __future__ import annotations

from typing import Any


def entry(*args: Any) -> None:
    """Process target; imports the torch side only in the child."""
    from autodep.worker.main import run_worker

    run_worker(*args)


def noop() -> None:
    """Process target that does nothing: starting it waits for the forkserver's boot."""
