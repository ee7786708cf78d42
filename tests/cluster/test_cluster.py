"""autodep on a real two-node Ray cluster on this machine (loopback, token auth).

Node 0 has 1 CPU; node 1 has 1 CPU and the custom resource `b` (a third node
joins later). One driver
(`python -m autodep.serve --ray auto`) starts an agent and an HTTP front end on
each node. `slow` keeps two workers, one per node; `onb` may only run on node 1
and starts with none (scale-to-zero), so it is cold-started there.
The tests run in file order: the last cluster test kills node 1.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests import models
from tests.support.images import image_bytes
from tests.support.leaks import shm_entries

pytest.importorskip("ray")

from autodep.cluster.local import LocalCluster, NodeSpec
from autodep.testing.server import ClusterServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]

RED = image_bytes("red")
RAY_PROCESSES = {"raylet", "gcs_server"}


def request(url: str, body: bytes | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "image/jpeg"} if body is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def served_by_node(url: str, model: str) -> dict[str, int]:
    _, status = request(url + "/status")
    counts: dict[str, int] = {}
    for worker in status["models"][model]["workers"]:
        counts[worker["node"]] = counts.get(worker["node"], 0) + worker["served"]
    return counts


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    """Poll `check()` until it returns something truthy (the status is pulled, not pushed)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
    return result


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Replaces the per-test check: the cluster's processes live for the module (see below)."""
    yield


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, ClusterServer]]:
    shm_before = shm_entries()
    here = tmp_path_factory.mktemp("cluster")
    models.save(models.SlowColorNet(iterations=150), here / "slow.pt")
    models.save(models.ColorNet(), here / "onb.pt")
    (here / "models.yaml").write_text(
        "models:\n"
        "  - {name: slow, path: slow.pt, labels: slow.labels.txt, workers: {min: 2},\n"
        "     batching: {max_batch_size: 1}}\n"
        "  - {name: onb, path: onb.pt, labels: onb.labels.txt, workers: {min: 0}}\n"
        "cluster:\n"
        "  placement: {onb: [b]}\n"
    )
    local = LocalCluster([NodeSpec(cpus=1), NodeSpec(cpus=1, resources={"b": 1})])
    server: ClusterServer | None = None
    try:
        local.start()
        env = {**local.env, "PYTHONPATH": os.getcwd(), "AUTODEP_IDLE_TIMEOUT": "60"}
        server = ClusterServer(["--config", str(here / "models.yaml")], env)
        yield local, server
    finally:
        if server is not None:
            server.stop()
        pids = local.pids()
        local.stop()
    remaining = [p for p in pids if _running(p)]
    assert remaining == [], "Ray or worker processes outlived the cluster"
    ray_children = [
        p.pid for p in psutil.Process().children(recursive=True) if p.name() in RAY_PROCESSES
    ]
    assert ray_children == [], "a raylet or GCS of ours outlived the cluster"
    assert shm_entries() - shm_before == set(), "shared-memory segments outlived the cluster"


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_each_node_has_a_front_end_on_loopback(cluster: tuple[LocalCluster, ClusterServer]) -> None:
    local, server = cluster
    assert set(server.urls) == set(local.node_ids)
    for url in server.urls.values():
        assert url.startswith("http://127.0.0.1:")
        code, status = request(url + "/status")
        assert code == 200
        assert set(status["nodes"]) == set(local.node_ids)
        workers = status["models"]["slow"]["workers"]
        assert {w["node"] for w in workers} == set(local.node_ids)  # spread: one per node


def test_requests_through_either_front_end_use_both_nodes(
    cluster: tuple[LocalCluster, ClusterServer],
) -> None:
    local, server = cluster
    for url in server.urls.values():
        before = served_by_node(url, "slow")
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(request, [url + "/predict/slow"] * 24, [RED] * 24))
        assert all(code == 200 for code, _ in answers), answers
        assert all(body["predictions"][0]["label"] == "red" for _, body in answers), answers[:3]

        def both_served(url: str = url, before: dict[str, int] = before) -> bool:
            after = served_by_node(url, "slow")
            return all(after.get(n, 0) > before.get(n, 0) for n in local.node_ids)

        wait_for(both_served)


def test_a_model_only_on_node_1_is_served_through_node_0(
    cluster: tuple[LocalCluster, ClusterServer],
) -> None:
    local, server = cluster
    first, second = local.node_ids
    code, body = request(server.urls[first] + "/predict/onb", image_bytes("blue"))
    assert code == 200, body
    assert body["predictions"][0]["label"] == "blue"
    nodes = wait_for(lambda: served_by_node(server.urls[first], "onb"))
    assert set(nodes) == {second}  # cold-started on node 1, never on node 0
    code, body = request(server.urls[first] + "/predict/nosuch", RED)
    assert code == 404 and "error" in body


def test_a_v2_request_is_forwarded_with_its_tensors(
    cluster: tuple[LocalCluster, ClusterServer],
) -> None:
    local, server = cluster
    url = server.urls[local.node_ids[0]] + "/v2/models/onb"
    _, meta = request(url)
    jpeg = image_bytes("green")
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": meta["inputs"][0]["name"],
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 4 + len(jpeg)},
                }
            ],
            "outputs": [{"name": meta["outputs"][0]["name"], "parameters": {"classification": 1}}],
        }
    ).encode()
    body = header + struct.pack("<I", len(jpeg)) + jpeg
    headers = {"Inference-Header-Content-Length": str(len(header))}
    with urllib.request.urlopen(urllib.request.Request(url + "/infer", body, headers)) as r:
        answer = json.loads(r.read())
    assert answer["outputs"][0]["data"][0].endswith(":1:green")


def test_a_node_that_joins_gets_an_agent_and_a_front_end(
    cluster: tuple[LocalCluster, ClusterServer],
) -> None:
    local, server = cluster
    joined = local.add_node(NodeSpec(cpus=1))
    url = wait_for(lambda: server.urls.get(joined), timeout=60)
    code, body = request(url + "/predict/slow", RED)
    assert code == 200 and body["predictions"][0]["label"] == "red"
    _, status = wait_for(lambda: _with_nodes(server.urls[local.node_ids[0]], 3))
    assert set(status["nodes"]) == set(local.node_ids)


def _with_nodes(url: str, count: int) -> tuple[int, Any] | None:
    code, status = request(url + "/status")
    return (code, status) if len(status["nodes"]) == count else None


def test_node_1_killed_under_load_requests_still_answered(
    cluster: tuple[LocalCluster, ClusterServer],
) -> None:
    local, server = cluster
    first, second = local.node_ids[:2]
    left = set(local.node_ids) - {second}
    url = server.urls[first]
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            codes.append(request(url + "/predict/slow", RED)[0])

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(load)
        wait_for(lambda: len(codes) >= 8)
        local.kill_node(1)
        lost = wait_for(lambda: "lost" in "".join(server.lines) and len(codes))
        done = len(codes)
        wait_for(lambda: len(codes) >= done + 8)  # answers keep coming after the loss
        stop.set()
    assert lost
    assert codes and all(code == 200 for code in codes), codes
    _, status = request(url + "/status")
    assert set(status["nodes"]) == left
    assert {w["node"] for w in status["models"]["slow"]["workers"]} <= left
    code, body = request(url + "/predict/onb", RED)
    assert code == 503 and "error" in body  # no node left has the resource `b`


def test_single_host_autodep_never_imports_ray() -> None:
    code = "import sys, autodep, autodep.serve, autodep.embedding; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_placement_of_an_unknown_model_is_a_config_error(tmp_path: Path) -> None:
    models.save(models.ColorNet(), tmp_path / "m.pt")
    config = tmp_path / "models.yaml"
    config.write_text("models:\n  - {name: m, path: m.pt}\ncluster: {placement: {other: [b]}}\n")
    args = ["-m", "autodep.serve", "--ray", "127.0.0.1:1", "--config", str(config)]
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "cluster.placement names models that are not served: ['other']" in out.stderr
