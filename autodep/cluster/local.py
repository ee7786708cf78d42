"""A Ray cluster of several nodes on this one machine, for tests, benchmarks and trials.

The nodes run under one helper process (`python -m autodep.cluster.local`),
which starts them with `ray.cluster_utils.Cluster` on 127.0.0.1 (`ray start`
rewrites a loopback `--node-ip-address` into the machine's address, and then
binds Ray's servers to it), prints the cluster's address as one JSON line and
then obeys one command per line on stdin: `kill N` (SIGKILL node N's raylet and
every process under it at once, as a crashed host), `add {NodeSpec as JSON}`
(one more node joins) and `stop`. Every Ray process is a
descendant of the helper, in the helper's own process group, so stopping ends
exactly the processes it started (never `ray stop`, which ends every Ray
process of the user). Token authentication is on.

    with LocalCluster([NodeSpec(cpus=1), NodeSpec(cpus=1, resources={"b": 1})]) as cluster:
        env = cluster.env          # RAY_ADDRESS and the token, for a driver process
        cluster.kill_node(1)

`autodep.testing.server.ClusterServer` starts `autodep.serve --ray auto` on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Self

import psutil

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray refuses less than 75 MiB
RAYLET = "raylet"  # a Ray node's process type, as in `Node.all_processes`


@dataclass
class NodeSpec:
    cpus: int = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    cpu_list: Sequence[int] | None = None  # pin the node's processes to these cores


def ray_env(token: str) -> dict[str, str]:
    """What every process of the cluster (nodes, drivers, actors) runs with."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        # A driver resolves "127.0.0.1" to the machine's address unless told that
        # the cluster is a single-machine one.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # See a killed raylet within ~1.5 s rather than Ray's default of ~15 s.
        "RAY_health_check_initial_delay_ms": "0",
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "500",
        "RAY_health_check_failure_threshold": "3",
    }


class LocalCluster:
    def __init__(self, nodes: Sequence[NodeSpec]) -> None:
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        self.specs = list(nodes)
        self.token = secrets.token_hex(16)
        # Ray's sessions, logs and sockets: private to this cluster, removed by stop().
        self.temp_dir = tempfile.mkdtemp(prefix="adr-", dir="/tmp")  # short: socket paths
        self.address = ""
        self.node_ids: list[str] = []
        self._helper: subprocess.Popen[str] | None = None

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus what a driver of this cluster needs (RAY_ADDRESS, the token)."""
        return {
            **os.environ,
            **ray_env(self.token),
            "RAY_ADDRESS": self.address,
            "RAY_TMPDIR": self.temp_dir,
        }

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._helper = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autodep.cluster.local",
                json.dumps([asdict(s) for s in self.specs]),
            ],
            env={**os.environ, **ray_env(self.token), "RAY_TMPDIR": self.temp_dir},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: stop() ends all of it
        )
        assert self._helper.stdout is not None
        line = self._helper.stdout.readline()  # the helper's one signal: up, or exited
        if not line:
            raise RuntimeError("the local Ray cluster did not start (see its stderr)")
        started = json.loads(line)
        self.address, self.node_ids = started["address"], started["node_ids"]

    def kill_node(self, index: int) -> None:
        self._command(f"kill {index}")

    def add_node(self, spec: NodeSpec) -> str:
        """Start one more node (it joins the running cluster); returns its node id."""
        node_id = self._command(f"add {json.dumps(asdict(spec))}")
        self.specs.append(spec)
        self.node_ids.append(node_id)
        return node_id

    def _command(self, command: str) -> str:
        helper = self._helper
        if helper is None or helper.stdin is None or helper.stdout is None:
            raise RuntimeError("the local cluster is not running")
        helper.stdin.write(command + "\n")
        helper.stdin.flush()
        status, _, answer = helper.stdout.readline().strip().partition(" ")
        if status != "ok":
            raise RuntimeError(f"{command!r} failed: {status} {answer}".strip())
        return answer

    def pids(self) -> set[int]:
        """The helper and every process under it that is still running."""
        if self._helper is None:
            return set()
        try:
            helper = psutil.Process(self._helper.pid)
            return {helper.pid, *(p.pid for p in helper.children(recursive=True))}
        except psutil.Error:
            return set()

    def stop(self) -> None:
        """Shut the nodes down; whatever is left of the group after the timeout is killed."""
        helper, self._helper = self._helper, None
        if helper is None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            return
        try:
            if helper.poll() is None and helper.stdin is not None:
                helper.stdin.write("stop\n")
                helper.stdin.flush()
            helper.wait(STOP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(helper.pid, signal.SIGKILL)  # the group this cluster created
        helper.wait()
        for stream in (helper.stdin, helper.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# -- the helper process --------------------------------------------------------


def _run(specs: list[dict[str, Any]], token: str) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    nodes: list[Any] = []
    try:
        for spec in specs:
            nodes.append(_add_node(cluster, spec, head=not nodes))
        print(
            json.dumps(
                {"address": cluster.address, "token": token, "node_ids": [n.node_id for n in nodes]}
            ),
            flush=True,
        )
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "kill":
                _crash(nodes[int(argument)])
                cluster.remove_node(nodes[int(argument)], allow_graceful=False)
                print("ok", flush=True)
            elif command == "add":
                nodes.append(_add_node(cluster, asdict(NodeSpec(**json.loads(argument))), False))
                print(f"ok {nodes[-1].node_id}", flush=True)
            elif command == "stop":
                break
            else:
                print(f"unknown command {line.strip()!r}", flush=True)
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]


def _add_node(cluster: Any, spec: dict[str, Any], head: bool) -> Any:
    args: dict[str, Any] = {
        "node_ip_address": "127.0.0.1",
        "num_cpus": spec["cpus"],
        "object_store_memory": OBJECT_STORE_BYTES,
        "resources": dict(spec["resources"]),
        "include_dashboard": False,
    }
    if head:
        args["ray_client_server_port"] = _free_port()
    node = cluster.add_node(**args)
    if spec["cpu_list"] is not None:
        # As `taskset`: the raylet, the workers it started, and (inherited) later ones.
        for info in node.all_processes[RAYLET]:
            raylet = psutil.Process(info.process.pid)
            for process in [raylet, *raylet.children(recursive=True)]:
                process.cpu_affinity(list(spec["cpu_list"]))
    return node


def _crash(node: Any) -> None:
    """SIGKILL a node's raylet and everything under it at once, as a host that crashed."""
    for info in node.all_processes[RAYLET]:
        raylet = psutil.Process(info.process.pid)
        victims = [raylet, *raylet.children(recursive=True)]
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(victims, timeout=STOP_TIMEOUT_S)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a Ray cluster of several local nodes.")
    parser.add_argument("nodes", help='JSON list: [{"cpus": 1, "resources": {}, "cpu_list": null}]')
    specs = json.loads(parser.parse_args().nodes)
    # Run by hand, the nodes get a fresh token (printed with the address); from
    # LocalCluster, the one in the environment.
    token = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(16)
    os.environ.update(ray_env(token))
    _run([asdict(NodeSpec(**s)) for s in specs], token)


if __name__ == "__main__":
    main()
