"""`python -m autodep.serve` in a subprocess: for the pytest plugin, the tests and the benchmarks.

    ServerProcess(name, flags) ──Popen──► python -m autodep.serve --port 0 ...
        stderr ──reader thread──► `lines` (and DIR/server-NAME.log), and the URL from
                                  "serving ... on http://HOST:PORT"
    stop(): SIGTERM ─► wait (the server drains, stops its workers, exits)
            ─► SIGKILL if it overstays ─► then every process it had started
            (forkserver, workers) is waited for, and killed only if still there

`ClusterServer` is the same with `--ray auto`: one front end per Ray node.
Only processes this object started, or that descend from it, are ever signalled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

import psutil

log = logging.getLogger(__name__)

SERVING = re.compile(r"serving .* on (http://\S+)")
CLUSTER_SERVING = re.compile(r"serving .* on \d+ nodes")
FRONT_END = re.compile(r"node (\w+): front end on (http://\S+)")
START_TIMEOUT = 180.0  # seconds to boot the forkserver and warm min_workers on a busy machine
STOP_TIMEOUT = 60.0  # seconds for the server to drain and exit after SIGTERM
ORPHAN_TIMEOUT = 10.0  # seconds for its children to follow it out


class ServerProcess:
    """One autodep server; `url()` blocks until it serves, `stop()` until it is gone."""

    def __init__(
        self,
        name: str,
        flags: Sequence[str],
        log_path: Path | None = None,
        module: str = "autodep.serve",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`module`: another server with the same command line (`--port`) and log line.

        Only `flags` and `env` configure it, not AUTODEP_* variables of this shell.
        """
        self.name = name
        self.command = [sys.executable, "-m", module, "--port", "0", *flags]
        self.log_path = log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AUTODEP_")}
        self.process = subprocess.Popen(
            self.command,
            env={**inherited, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # Ray echoes its nodes' messages there; autodep: stderr
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self.boot_s: float | None = None  # from Popen to the "serving" line
        self._new_line = threading.Condition()  # notified for each line, and at the end
        self._log_ended = False
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
        """Drain stderr all the time (a full pipe would block the server); wake line waiters."""
        assert self.process.stderr is not None
        with self.process.stderr as stream, _log_file(self.log_path) as file:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                if file is not None:
                    file.write(line + "\n")
                    file.flush()
                if SERVING.search(line) and self.boot_s is None:
                    self.boot_s = time.monotonic() - self.started_at
                with self._new_line:
                    self.lines.append(line)
                    self._new_line.notify_all()
        with self._new_line:  # stderr closed: the server has exited
            self._log_ended = True
            self._new_line.notify_all()

    def wait_for_line(
        self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT
    ) -> re.Match[str]:
        """The first log line matching `pattern`, waiting for it (each new line is a signal).

        Raises RuntimeError, with the log's tail, if the server exits or the timeout passes first.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        with self._new_line:
            while True:
                for line in self.lines[seen:]:
                    if match := pattern.search(line):
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self._log_ended or left <= 0:
                    break
                self._new_line.wait(left)
        tail = "\n".join(self.lines[-20:])
        raise RuntimeError(
            f"server {self.name} logged no {pattern.pattern!r} ({self.command}); log:\n{tail}"
        )

    def url(self, timeout: float = START_TIMEOUT) -> str:
        if self._known is None:
            try:
                self._known = self.wait_for_line(SERVING, timeout).group(1)
            except RuntimeError:
                tail = "\n".join(self.lines[-20:])
                raise RuntimeError(
                    f"server {self.name} did not start ({self.command}); log:\n{tail}"
                ) from None
        return self._known

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


class ClusterServer(ServerProcess):
    """`python -m autodep.serve --ray auto`: started, with one front end per Ray node.

    `env` must name the cluster (RAY_ADDRESS and its token: `LocalCluster.env`).
    """

    def __init__(
        self, flags: Sequence[str], env: Mapping[str, str], log_path: Path | None = None
    ) -> None:
        super().__init__("cluster", ["--ray", "auto", *flags], log_path, env=env)
        try:
            self.wait_for_line(CLUSTER_SERVING)
        except RuntimeError:
            self.stop()
            raise

    @property
    def urls(self) -> dict[str, str]:
        """Each node's front end, by node id, as logged so far (a node that joins adds one)."""
        return {
            m.group(1): m.group(2) for line in list(self.lines) if (m := FRONT_END.search(line))
        }


def _log_file(path: Path | None) -> contextlib.AbstractContextManager[TextIO | None]:
    return path.open("w") if path is not None else contextlib.nullcontext()


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
