"""`python -m autodep.serve` in a subprocess: for the pytest plugin and the benchmarks.

    ServerProcess(name, flags) ──Popen──► python -m autodep.serve --port 0 ...
        stderr ──reader thread──► DIR/server-NAME.log, and the URL from
                                  "serving ... on http://HOST:PORT"
    stop(): SIGTERM ─► wait (the server drains, stops its workers, exits)
            ─► SIGKILL if it overstays ─► then every process it had started
            (forkserver, workers) is waited for, and killed only if still there

Only processes this object started, or that descend from it, are ever signalled.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import psutil

log = logging.getLogger(__name__)

SERVING = re.compile(r"serving .* on (http://\S+)")
START_TIMEOUT = 180.0  # seconds to boot the forkserver and warm min_workers on a busy machine
STOP_TIMEOUT = 60.0  # seconds for the server to drain and exit after SIGTERM
ORPHAN_TIMEOUT = 10.0  # seconds for its children to follow it out


class ServerProcess:
    """One autodep server; `url()` blocks until it serves, `stop()` until it is gone."""

    def __init__(
        self, name: str, flags: Sequence[str], log_path: Path, module: str = "autodep.serve"
    ) -> None:
        """`module`: another server with the same command line (`--port`) and log line."""
        self.name = name
        self.command = [sys.executable, "-m", module, "--port", "0", *flags]
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        # Only the flags given here configure it, not AUTODEP_* variables of this shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODEP_")}
        self.process = subprocess.Popen(
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self.boot_s: float | None = None  # from Popen to the "serving" line
        self._url: queue.Queue[str | None] = queue.Queue()
        self._known: str | None = None
        self._descendants: list[psutil.Process] | None = None  # set by terminate()
        self._code: int | None = None
        self._waited = False
        self.orphans: list[int] = []  # processes it left behind, that `wait` had to kill
        self._reader = threading.Thread(target=self._read_log, name=f"log-{name}", daemon=True)
        self._reader.start()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_log(self) -> None:
        """Drain stderr all the time (a full pipe would block the server); pass on the URL."""
        assert self.process.stderr is not None
        with self.process.stderr as stream, self.log_path.open("w") as file:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                self.lines.append(line)
                file.write(line + "\n")
                file.flush()
                if (match := SERVING.search(line)) and self.boot_s is None:
                    self.boot_s = time.monotonic() - self.started_at
                    self._url.put(match.group(1))
        self._url.put(None)  # stderr closed: the server has exited

    def url(self, timeout: float = START_TIMEOUT) -> str:
        if self._known is not None:
            return self._known
        try:
            url = self._url.get(timeout=timeout)
        except queue.Empty:
            url = None
        if url is None:
            tail = "\n".join(self.lines[-20:])
            raise RuntimeError(f"server {self.name} did not start ({self.command}); log:\n{tail}")
        self._known = url
        return url

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        self.terminate()
        return self.wait()

    def terminate(self) -> None:
        """Note every process the server started, then send it SIGTERM (once)."""
        if self._descendants is not None:
            return
        self._descendants = _descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self) -> int | None:
        """Wait for the server and everything it started to be gone (after `terminate`)."""
        if self._waited:
            return self._code
        self._waited = True
        code: int | None = None
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("server %s ignored SIGTERM for %g s: killing it", self.name, STOP_TIMEOUT)
            self.process.kill()
            self.process.wait()
        # Its workers and forkserver leave with it; make sure, and say so if not.
        _, alive = psutil.wait_procs(self._descendants or [], timeout=ORPHAN_TIMEOUT)
        self.orphans = [orphan.pid for orphan in alive]
        for orphan in alive:
            log.warning("server %s left process %d behind: killing it", self.name, orphan.pid)
            orphan.kill()
        psutil.wait_procs(alive, timeout=ORPHAN_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)  # stderr closes when the last of them has gone
        self._code = code
        return code


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return children


def stop_all(servers: Sequence[ServerProcess]) -> None:
    """Stop several servers at once: SIGTERM to each, then wait for each."""
    for server in servers:
        server.terminate()
    for server in servers:
        code = server.wait()
        if code not in (0, None):
            log.warning("server %s exited with code %s", server.name, code)
