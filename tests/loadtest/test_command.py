"""`autodep loadtest`: the console script's subcommand, with and without its extra."""

from __future__ import annotations

import json
import subprocess
import sys

from autodep import cli
from autodep.loadtest import schedule

# Runs the command in a fresh interpreter where matplotlib and tqdm cannot be imported,
# as in an install of the wheel without the `loadtest` extra.
WITHOUT_EXTRA = """
import sys
sys.modules["matplotlib"] = None
sys.modules["tqdm"] = None
from autodep import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _without_extra(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA, "loadtest", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_and_make_need_no_extra(tmp_path):
    helped = _without_extra("--help")
    assert helped.returncode == 0, helped.stderr
    assert "usage: autodep loadtest" in helped.stdout
    for command in ("make", "run", "report", "compare"):
        assert command in helped.stdout

    out = tmp_path / "s.jsonl"
    made = _without_extra("make", "constant", "--rate", "4", "--duration", "2", "--out", str(out))
    assert made.returncode == 0, made.stderr
    requests = schedule.load(out)
    assert len(requests) == 8
    assert [r.t for r in requests] == sorted(r.t for r in requests)


def test_run_without_extra_names_it(tmp_path):
    out = tmp_path / "s.jsonl"
    argv = ["loadtest", "make", "poisson", "--rate", "2", "--duration", "1"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    ran = _without_extra(
        "run", str(out), "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "r")
    )
    assert ran.returncode == 1
    assert "pip install 'autodep[loadtest]'" in ran.stderr
    assert "matplotlib" in ran.stderr and "tqdm" in ran.stderr
    assert not (tmp_path / "r").exists()  # refused before sending anything


def test_bad_option_is_exit_2(capsys):
    assert cli.main(["loadtest", "make", "poisson", "--out", "x.jsonl"]) == 2
    assert "needs --rate and --duration" in capsys.readouterr().err


def test_schedule_meta_says_how_it_was_made(tmp_path):
    out = tmp_path / "s.jsonl"
    argv = ["loadtest", "make", "spike", "--rate", "2", "--peak", "10", "--duration", "5"]
    assert cli.main([*argv, "--seed", "3", "--out", str(out)]) == 0
    meta = schedule.load_meta(out)
    assert meta["kind"] == "spike" and meta["seed"] == 3
    assert meta["requests"] == len(schedule.load(out))
    json.dumps(meta)  # plain JSON
