"""`python -m autodep.serve` as a user runs it: a real server process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from tests.conftest import image_bytes

STARTUP_TIMEOUT = 60.0


class CliServer:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autodep.serve", "--port", "0", *args],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.log: list[str] = []
        self.url = self._wait_for_address()

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        assert self.process.stderr is not None
        for line in self.process.stderr:  # each line is a signal from the server
            self.log.append(line)
            if match := re.search(r"serving .* on (http://\S+)", line):
                return match.group(1)
            if time.monotonic() > deadline:
                break
        self.process.kill()
        raise AssertionError("server did not start:\n" + "".join(self.log))

    def request(
        self,
        path: str,
        body: bytes | None = None,
        ctype: str = "image/jpeg",
        headers: dict[str, str] | None = None,
    ):
        headers = {**({"Content-Type": ctype} if body else {}), **(headers or {})}
        request = urllib.request.Request(self.url + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def worker_pids(self) -> list[int]:
        _, status = self.request("/status")
        return [w["pid"] for m in status["models"].values() for w in m["workers"]]

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        _, rest = self.process.communicate(timeout=timeout)
        return self.process.returncode, "".join(self.log) + rest


@pytest.fixture
def cli():
    """cli(*args, env=...) -> a started CliServer; killed after the test if still running."""
    started: list[CliServer] = []

    def make(*args: str, env: dict[str, str] | None = None) -> CliServer:
        started.append(CliServer(*args, env=env))
        return started[-1]

    yield make
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.communicate()


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
        in_flight = [pool.submit(server.request, "/predict", image_bytes("red"))]
        wait_until(lambda: gate.entered == 1)  # the first is inside the model: the rest queue
        in_flight += [pool.submit(server.request, "/predict", image_bytes("blue")) for _ in "ab"]
        wait_until(lambda: server.request("/status")[1]["models"]["gated"]["queue_depth"] == 2)
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
    code, log = server.finish()
    assert code == 0, log
    assert "stopped" in log


def wait_until(condition, timeout: float = 30.0) -> None:
    """Poll a condition that, once true, stays true, failing after a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)  # pacing the probe


def test_no_orphans_after_the_server_is_killed(cli, color_model):
    server = cli("--model", str(color_model), "--min-workers", "2", "--max-workers", "2")
    pids = server.worker_pids()
    assert len(pids) == 2
    server.process.kill()
    server.process.wait()
    assert gone(pids), "workers outlived a killed server"


def test_flags_come_from_environment_variables(cli, color_model):
    server = cli(env={"AUTODEP_MODEL": str(color_model), "AUTODEP_MAX_WORKERS": "3"})
    _, body = server.request("/status")
    assert body["models"]["colors"]["max_workers"] == 3
    server.process.send_signal(signal.SIGTERM)
    assert server.finish()[0] == 0


def test_the_auth_token_comes_from_the_environment(cli, color_model):
    server = cli("--model", str(color_model), env={"AUTODEP_AUTH_TOKEN": "from-env"})
    status, body = server.request("/predict", image_bytes("green"))
    assert status == 401 and "bearer token" in body["error"]
    assert server.request("/v2/health/ready") == (200, {"ready": True})
    status, body = server.request(
        "/predict", image_bytes("green"), headers={"Authorization": "Bearer from-env"}
    )
    assert (status, body["predictions"][0]["label"]) == (200, "green")
    server.process.send_signal(signal.SIGTERM)
    code, log = server.finish()
    assert code == 0 and "from-env" not in log


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
    status, answer = server.request(
        "/v2/repository/models/colors/unload", b"{}", "application/json"
    )
    assert status == 200 and answer[0]["state"] == "UNAVAILABLE"
    assert server.request("/predict/colors", image_bytes("red"))[0] == 404
    status, answer = server.request("/v2/repository/models/colors/load", b"", "application/json")
    assert status == 200 and answer[-1]["state"] == "READY"  # from the repository YAML
    status, body = server.request("/predict/colors", image_bytes("red"))
    assert status == 200 and body["predictions"][0]["label"] == "red"
    server.process.send_signal(signal.SIGINT)
    code, _ = server.finish()
    assert code == 0
