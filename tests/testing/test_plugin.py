"""The pytest plugin `autodep.testing`, as a user's own suite uses it (through `pytester`).

Each test writes a small user suite into a fresh directory and runs it in a
subprocess `pytest -p autodep.testing`; the suite reports the processes it saw
and the shared-memory buffers (memfd inodes) they mapped, as JSON lines, so the
test can check afterwards that none of them is left. (autodep's buffers are
anonymous memfds, not /dev/shm files; other jobs on the machine change /dev/shm
at any time, so it is not the place to look.)
"""

from __future__ import annotations

import configparser
import json
import os
from pathlib import Path

import psutil
import pytest

from tests import models

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240.0  # seconds for one user suite: it boots forkservers (each imports torch)
pytestmark = pytest.mark.timeout(2 * RUN_TIMEOUT)  # a test may run two user suites

# Helpers of the user suites: tiny images and a record of the processes seen.
HELPERS = """
import io, json, os, urllib.request
from PIL import Image

def jpeg(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "JPEG")
    return buffer.getvalue()

RED, BLUE = jpeg((230, 20, 20)), jpeg((20, 20, 230))

def post(url, body):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())

def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())

def memfds(*pids):
    # the inodes of the memfd buffers these processes map
    found = set()
    for pid in pids:
        with open(f"/proc/{pid}/maps") as maps:
            found |= {int(line.split()[4]) for line in maps if "memfd:" in line}
    return sorted(found)

def record(**seen):
    with open("seen.jsonl", "a") as file:
        file.write(json.dumps(seen) + "\\n")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user project: the colour model, its labels and the helpers."""
    models.save(models.ColorNet(), pytester.path / "colors.pt")
    pytester.makepyfile(helpers=HELPERS)
    pytester.syspathinsert()
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "autodep.testing", "-p", "no:cacheprovider", "-rs", *args, timeout=RUN_TIMEOUT
    )


def seen(pytester: pytest.Pytester) -> list[dict[str, object]]:
    path = pytester.path / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_gone(pids: list[int], buffers: list[int]) -> None:
    """None of the processes is alive, and no process maps any of the buffers."""
    assert buffers, "the user suite saw no shared-memory buffer: nothing was checked"
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    assert alive == [], f"processes outlived the user suite: {alive}"
    mapped = set()
    for pid in psutil.pids():
        try:
            with open(f"/proc/{pid}/maps") as maps:
                mapped |= {int(line.split()[4]) for line in maps if "memfd:" in line}
        except OSError:  # gone meanwhile, or not ours to read
            continue
    assert mapped & set(buffers) == set(), "shared-memory buffers outlived the user suite"


def test_server_fixture_serves_the_marked_model_and_leaves_nothing(suite):
    suite.makepyfile(
        test_user="""
        import pytest
        from helpers import BLUE, RED, get, memfds, post, record

        pytestmark = pytest.mark.autodep_model("colors.pt", max_workers=1, max_batch_size=4)

        def test_predicts(autodep_server):
            assert post(autodep_server.url + "/predict", RED)["predictions"][0]["label"] == "red"
            status = get(autodep_server.url + "/status")["models"]["colors"]
            assert status["max_workers"] == 1
            workers = [w["pid"] for w in status["workers"]]
            record(server=autodep_server.pid, workers=workers, memfds=memfds(*workers))

        def test_shares_the_server(autodep_server):
            assert post(autodep_server.url + "/predict", BLUE)["predictions"][0]["label"] == "blue"
            record(server=autodep_server.pid, workers=[], memfds=[])

        @pytest.mark.autodep_model("colors.pt", max_workers=2)
        def test_other_settings_other_server(autodep_server):
            status = get(autodep_server.url + "/status")["models"]["colors"]
            assert status["max_workers"] == 2
            workers = [w["pid"] for w in status["workers"]]
            record(server=autodep_server.pid, workers=workers, memfds=memfds(*workers))
        """
    )
    result = run(suite)
    result.assert_outcomes(passed=3)
    first, second, third = seen(suite)
    assert first["server"] == second["server"] != third["server"]
    assert first["workers"] and third["workers"]
    pids = [first["server"], third["server"], *first["workers"], *third["workers"]]
    assert_gone(pids, first["memfds"] + third["memfds"])


def test_model_from_the_command_line_and_a_skip_without_one(suite):
    suite.makepyfile(
        test_user="""
        from helpers import RED, get, memfds, post, record

        def test_predicts(autodep_server):
            assert post(autodep_server.url + "/predict", RED)["predictions"][0]["label"] == "red"
            status = get(autodep_server.url + "/status")["models"]["colors"]
            workers = [w["pid"] for w in status["workers"]]
            record(server=autodep_server.pid, workers=workers, memfds=memfds(*workers))
        """
    )
    result = run(suite, "--autodep-model", "colors.pt")
    result.assert_outcomes(passed=1)
    (line,) = seen(suite)
    assert_gone([line["server"], *line["workers"]], line["memfds"])
    result = run(suite)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no model to serve: give --autodep-model PATH*"])


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_embedded_fixtures_in_either_asyncio_mode(suite, mode):
    suite.makepyfile(
        test_user="""
        import os
        import pytest
        from helpers import BLUE, RED, memfds, record

        pytestmark = pytest.mark.autodep_model("colors.pt", max_workers=1)

        def test_blocking(autodep_blocking):
            assert autodep_blocking.predict(RED)["predictions"][0]["label"] == "red"
            workers = [w["pid"] for w in autodep_blocking.status()["models"]["colors"]["workers"]]
            record(workers=workers, memfds=memfds(os.getpid(), *workers))

        @pytest.mark.asyncio
        async def test_async(autodep_service):
            result = await autodep_service.predict(BLUE, top_n=1)
            assert [p["label"] for p in result["predictions"]] == ["blue"]
            workers = [w["pid"] for w in autodep_service.status()["models"]["colors"]["workers"]]
            record(workers=workers, memfds=memfds(os.getpid(), *workers))
        """
    )
    result = run(
        suite, "-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=2)
    lines = seen(suite)
    workers = [pid for line in lines for pid in line["workers"]]
    assert len(workers) == 2
    assert_gone(workers, [inode for line in lines for inode in line["memfds"]])


def test_a_server_that_cannot_start_fails_the_test_with_its_log(suite):
    (suite.path / "broken.pt").write_text("not a TorchScript file\n")
    suite.makepyfile(
        test_user="""
        import pytest

        @pytest.mark.autodep_model("broken.pt")
        def test_never_runs(autodep_server):
            pass

        @pytest.mark.autodep_model("colors.pt", max_wrokers=1)
        def test_misspelt(autodep_server):
            pass
        """
    )
    result = run(suite)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*autodep server pytest-0 did not start*broken.pt*",
            "*could not start: model 'broken'*",
            "*unknown setting 'max_wrokers' for a server; known: *max_workers*",
        ]
    )


def test_the_installed_entry_point_and_dash_p_load_it_once(suite, tmp_path, monkeypatch):
    """setup.cfg's entry point, installed, together with `-p autodep.testing`."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    entry_points = setup["options.entry_points"]["pytest11"].strip()
    assert entry_points == "autodep.testing = autodep.testing"
    dist = tmp_path / "site" / "autodep_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: autodep-probe\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{entry_points}\n")
    suite.makepyfile(test_user="def test_listed(autodep_servers):\n    pass\n")
    path = os.pathsep.join([str(dist.parent), os.environ.get("PYTHONPATH", str(ROOT))])
    monkeypatch.setenv("PYTHONPATH", path)
    run(suite).assert_outcomes(passed=1)  # -p autodep.testing as well as the entry point
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=1)  # the entry point alone
