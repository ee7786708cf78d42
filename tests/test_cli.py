"""`python -m autodep.serve` as a user runs it: a real server process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psutil
import pytest

from autodep.testing.server import ServerProcess, stop_all
from tests.support.images import image_bytes
from tests.support.servers import request
from tests.support.waiting import wait_until


def worker_pids(server: ServerProcess) -> list[int]:
    _, status = request(server, "/status")
    return [w["pid"] for m in status["models"].values() for w in m["workers"]]


def log_of(server: ServerProcess) -> str:
    """Everything it logged (complete once `wait()` has returned)."""
    return "\n".join(server.lines)


@pytest.fixture
def cli(tmp_path):
    """cli(*args, env=...) -> a started ServerProcess; stopped after the test if still running.

    AUTODEP_* variables come from `env` only: the flags under test are the ones given.
    """
    started: list[ServerProcess] = []

    def make(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        name = f"cli-{len(started)}"
        env = {"AUTODEP_OPTIMIZE": "off", **(env or {})}
        started.append(ServerProcess(name, args, tmp_path / f"{name}.log", env=env))
        started[-1].url()
        return started[-1]

    yield make
    stop_all(started)


def gone(pids: list[int], timeout: float = 15.0) -> bool:
    _, alive = psutil.wait_procs([_proc(p) for p in pids if _proc(p)], timeout=timeout)
    return not alive


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_drains_and_exits_cleanly_on_a_signal(cli, gated_model, signum):
    model, gate = gated_model
    server = cli("--model", str(model), "--max-workers", "1", "--max-batch-size", "1")
    with ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(request, server, "/predict", image_bytes("red"))]
        wait_until(lambda: gate.entered == 1)  # the first is inside the model: the rest queue
        in_flight += [pool.submit(request, server, "/predict", image_bytes("blue")) for _ in "ab"]
        wait_until(lambda: request(server, "/status")[1]["models"]["gated"]["queue_depth"] == 2)
        children = psutil.Process(server.process.pid).children(recursive=True)
        assert len(children) >= 2  # the forkserver and the worker, at least
        server.process.send_signal(signum)
        gate.open()
        answers = [f.result() for f in in_flight]
    assert [status for status, _ in answers] == [200, 200, 200]
    assert [body["predictions"][0]["label"] for _, body in answers] == ["red", "blue", "blue"]
    server.process.wait(60)
    # At the moment the server has exited, nothing it started is left, not even as a zombie.
    assert [p.pid for p in children if p.is_running()] == []
    assert server.wait() == 0, log_of(server)
    assert "stopped" in log_of(server)


def test_no_orphans_after_the_server_is_killed(cli, color_model):
    server = cli("--model", str(color_model), "--min-workers", "2", "--max-workers", "2")
    pids = worker_pids(server)
    assert len(pids) == 2
    server.process.kill()
    server.process.wait()
    assert gone(pids), "workers outlived a killed server"


def test_flags_come_from_environment_variables(cli, color_model):
    server = cli(env={"AUTODEP_MODEL": str(color_model), "AUTODEP_MAX_WORKERS": "3"})
    _, body = request(server, "/status")
    assert body["models"]["colors"]["max_workers"] == 3
    assert server.stop() == 0


def test_the_auth_token_comes_from_the_environment(cli, color_model):
    server = cli("--model", str(color_model), env={"AUTODEP_AUTH_TOKEN": "from-env"})
    status, body = request(server, "/predict", image_bytes("green"))
    assert status == 401 and "bearer token" in body["error"]
    assert request(server, "/v2/health/ready") == (200, {"ready": True})
    status, body = request(
        server, "/predict", image_bytes("green"), headers={"Authorization": "Bearer from-env"}
    )
    assert (status, body["predictions"][0]["label"]) == (200, "green")
    assert server.stop() == 0
    assert "from-env" not in log_of(server)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "nothing to serve"),
        (["--model", "/no/such/model.pt"], "no such file"),
        (["--model", "{color_model}", "--max-workers", "0"], "max_workers"),
        (["--model", "{color_model}", "--model-control-mode", "on"], "not 'on'"),
    ],
)
def test_bad_arguments_exit_with_a_message(color_model, args, words):
    args = [a.format(color_model=color_model) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "autodep.serve", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert words in result.stderr


def test_a_broken_model_exits_non_zero(broken_model):
    result = subprocess.run(
        [sys.executable, "-m", "autodep.serve", "--model", str(broken_model), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "could not start" in result.stderr and "broken" in result.stderr


def test_console_script_help():
    script = os.path.join(os.path.dirname(sys.executable), "autodep")  # installed beside python
    result = subprocess.run([script, "serve", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--max-workers" in result.stdout


def test_explicit_model_control_from_the_environment(cli, tmp_path, color_model):
    repository = tmp_path / "models.yaml"
    labels = color_model.with_name("colors.labels.txt")
    repository.write_text(
        f"models: [{{name: colors, path: {color_model}, labels: {labels}, workers: {{max: 1}}}}]\n"
    )
    server = cli("--config", str(repository), env={"AUTODEP_MODEL_CONTROL_MODE": "explicit"})
    status, answer = request(
        server, "/v2/repository/models/colors/unload", b"{}", "application/json"
    )
    assert status == 200 and answer[0]["state"] == "UNAVAILABLE"
    assert request(server, "/predict/colors", image_bytes("red"))[0] == 404
    status, answer = request(server, "/v2/repository/models/colors/load", b"", "application/json")
    assert status == 200 and answer[-1]["state"] == "READY"  # from the repository YAML
    status, body = request(server, "/predict/colors", image_bytes("red"))
    assert status == 200 and body["predictions"][0]["label"] == "red"
    server.process.send_signal(signal.SIGINT)
    assert server.wait() == 0, log_of(server)


def test_the_server_yields_the_cores_to_its_workers_once_a_queue_stays_full(cli, gated_model):
    base = os.getpriority(os.PRIO_PROCESS, 0)  # what the server and its workers start with
    if base >= 10:
        pytest.skip("the tests already run at niceness 10 or more")
    model, gate = gated_model
    flags = ["--max-workers", "1", "--max-batch-size", "1", "--max-queue", "1", "--tick", "0.2"]
    server = cli("--model", str(model), *flags)
    process = psutil.Process(server.process.pid)

    def niceness() -> set[int]:
        return {os.getpriority(os.PRIO_PROCESS, t.id) for t in process.threads()}

    assert niceness() == {base}  # serving, not overloaded: it keeps its priority
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(request, server, "/predict", image_bytes("red"))]
        wait_until(lambda: gate.entered == 1)  # inside the model: the next one waits
        held.append(pool.submit(request, server, "/predict", image_bytes("blue")))
        wait_until(lambda: request(server, "/status")[1]["models"]["gated"]["queue_depth"] == 1)

        def yielded() -> bool:  # refused, tick after tick, until the server yields
            assert request(server, "/predict", image_bytes("red"))[0] == 503
            return niceness() == {10}

        wait_until(yielded)
        gate.open()
        assert [f.result()[0] for f in held] == [200, 200]
    [worker] = worker_pids(server)
    assert psutil.Process(worker).nice() == base


def test_a_request_aiohttp_cannot_parse_is_answered_in_json(cli, color_model):
    server = cli("--model", str(color_model))
    address = urlsplit(server.url())
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")
        reply = b"".join(iter(lambda: sock.recv(65536), b""))  # it closes the connection
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *headers = head.decode().split("\r\n")
    assert status_line.split()[1] == "400"
    assert "content-type: application/json; charset=utf-8" in [h.lower() for h in headers]
    assert json.loads(body)["error"].startswith("bad request: Got more than 8190 bytes")
