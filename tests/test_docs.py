"""Every command in the README and in docs/ runs as written, or is checked another way.

The shell blocks (```sh) of README.md, docs/*.md, bench/README.md and
research/README.md, and the inline commands of every page (`python -m ...`,
`autodep ...`, `make ...`), are read line by line:

- run: `--help` lines, the generated sample pictures (`python -m examples.shapes`)
  and `python -c` lines, in a scratch directory (`/tmp/` becomes it);
- checked: commands that need a trained model or a running server. The module of
  `python -m MODULE` must exist; every `--flag` must be a flag of that command
  (its `--help` names it); `autodep SUBCOMMAND` and `make TARGET` must exist;
  `pip install 'autodep[EXTRA]'` names a real extra; a `curl` that sends
  `@/tmp/shapes/FILE` sends a file that the documented `examples.shapes` writes.

Besides: every relative link (and its #anchor) and every repository path in
backquotes names something that exists. All `--help` texts come from one
interpreter (one `import torch`), so the whole module takes seconds.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "docs" / "report").glob("measurements.md"),
        ROOT / "bench" / "README.md",
        ROOT / "research" / "README.md",
    ]
)
PYTHONS = {"python", "python3", ".venv/bin/python", "$(PY)"}
SUBCOMMANDS = {"autodep.cli", "bench", "autodep.loadtest"}  # modules whose first argument is one
EXTERNAL = {"ray", "export", "docker", "kubectl"}  # documented, not ours to check
RUN_MODULES = {"examples.shapes"}  # fast, self-contained: run as written
REPO_DIRS = ("autodep/", "tests/", "bench/", "research/", "examples/", "docs/")

# Prints the `--help` of each command in argv lists (JSON on stdin) as JSON, in one
# interpreter: `runpy` runs each as `python -m` would.
HELPER = """
import contextlib, io, json, runpy, sys, warnings
warnings.simplefilter("ignore")
out = {}
for argv in json.load(sys.stdin):
    buffer = io.StringIO()
    code = 0
    sys.argv = [argv[0], *argv[1:]]
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException as error:
            code, buffer = 1, io.StringIO(f"{type(error).__name__}: {error}")
    out[json.dumps(argv)] = [code, buffer.getvalue()]
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str
    inline: bool  # from a `code span` in prose, not from a shell block

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _shell_lines(path: Path) -> list[Command]:
    found: list[Command] = []
    fence: str | None = None
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence in ("sh", "bash", "shell"):
            if not pending:
                start = number
            pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                text = pending.strip()
                pending = ""
                if text and not text.startswith("#"):
                    found.append(Command(_name(path), start, text, inline=False))
        elif fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                if re.match(r"(python3? -m |autodep [a-z]+\b|make )", span):
                    found.append(Command(_name(path), number, span, inline=True))
    return found


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


COMMANDS = [c for page in PAGES for c in _shell_lines(page)]


@dataclass
class Parsed:
    env: dict[str, str]
    program: str  # "python", "autodep", "make", "curl", "pip", or an external one
    module: str | None
    args: list[str]


def _parse(command: Command) -> Parsed:
    # A command substitution is one word here (`$(cat FILE)` holds a space).
    tokens = shlex.split(re.sub(r"\$\([^)]*\)", "SUBSTITUTED", command.text), comments=True)
    env = {}
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        key, value = tokens.pop(0).split("=", 1)
        env[key] = value
    program, args = tokens[0], tokens[1:]
    if program == "pytest":
        return Parsed(env, "python", "pytest", args)
    if program in PYTHONS:
        if args[:1] == ["-m"]:
            module, args = args[1], args[2:]
            if module == "autodep.cli":
                return Parsed(env, "autodep", None, args)
            return Parsed(env, "python", module, args)
        return Parsed(env, "python", None, args)
    return Parsed(env, program, None, args)


def _flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if re.match(r"^--[a-z]", a)]


def _help_argv(parsed: Parsed) -> list[str] | None:
    """The `--help` command whose text must name the flags of `parsed`."""
    positional = [a for a in parsed.args if not a.startswith("-")]
    if parsed.program == "autodep":
        chosen = parsed.args[:1]
        if chosen == ["loadtest"] and len(parsed.args) > 1 and not parsed.args[1].startswith("-"):
            chosen = parsed.args[:2]
        return ["autodep.cli", *chosen, "--help"]
    if parsed.program == "python" and parsed.module is not None:
        if parsed.module in SUBCOMMANDS and positional and parsed.args[0] == positional[0]:
            return [parsed.module, positional[0], "--help"]
        return [parsed.module, "--help"]
    return None


def _needs_help(parsed: Parsed) -> bool:
    """Flags to check, or an `autodep SUBCOMMAND` (its help fails if there is none)."""
    if parsed.program == "autodep":
        return True
    return bool(_flags(parsed.args)) and _help_argv(parsed) is not None


@pytest.fixture(scope="module")
def helps() -> dict[str, tuple[int, str]]:
    wanted = sorted(
        {json.dumps(_help_argv(p)) for p in map(_parse, COMMANDS) if _needs_help(p)}
        | {json.dumps(["autodep.cli", "serve", "--help"])},
        # pytest first: it warns (an error here) about plugins that others imported before it
        key=lambda argv: (not argv.startswith('["pytest"'), argv),
    )
    done = subprocess.run(
        [sys.executable, "-c", HELPER],
        input=json.dumps([json.loads(w) for w in wanted]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {key: (code, text) for key, (code, text) in json.loads(done.stdout).items()}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


def _runs(command: Command, parsed: Parsed) -> bool:
    if command.inline:
        return False
    return parsed.args[-1:] == ["--help"] or (
        parsed.program == "python" and (parsed.module in RUN_MODULES or parsed.args[:1] == ["-c"])
    )


def _run(parsed: Parsed, scratch: Path) -> subprocess.CompletedProcess[str]:
    args = [a.replace("/tmp/", f"{scratch}/") for a in parsed.args]
    argv = [sys.executable, *(["-m", parsed.module] if parsed.module else []), *args]
    if parsed.program == "autodep":
        argv = [sys.executable, "-m", "autodep.cli", *args]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=scratch,
        env={**os.environ, **parsed.env, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*):", text, flags=re.M))


def _extras() -> set[str]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return set(config["options.extras_require"])


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_command(command: Command, helps: dict[str, tuple[int, str]], scratch: Path) -> None:
    parsed = _parse(command)
    if parsed.program in EXTERNAL:
        return
    if parsed.program == "make":
        assert parsed.args, "make without a target"
        unknown = set(parsed.args) - _make_targets()
        assert not unknown, f"no such make target: {unknown}"
        return
    if parsed.program == "pip":
        for extra in re.findall(r"autodep\[([\w,]+)\]", " ".join(parsed.args)):
            assert set(extra.split(",")) <= _extras(), f"no such extra: {extra}"
        return
    if parsed.program == "curl":
        return  # needs a server; its pictures are checked in test_curl_pictures_are_written
    assert parsed.program in ("python", "autodep"), f"unknown program {parsed.program!r}"
    if parsed.module is not None:
        assert find_spec(parsed.module) is not None, f"no module {parsed.module}"
    if parsed.module == "pytest":
        paths = [a for a in parsed.args if not a.startswith("-") and a.endswith(".py")]
        for path in paths:
            assert (ROOT / path.split("::")[0]).exists(), f"no test file {path}"
    if parsed.program == "autodep":
        assert parsed.args[:1], "autodep without a subcommand"
    if _needs_help(parsed):
        code, text = helps[json.dumps(_help_argv(parsed))]
        assert code == 0, text[-2000:]
        missing = [
            f for f in _flags(parsed.args) if not re.search(rf"(?<![\w-]){re.escape(f)}\b", text)
        ]
        assert not missing, f"not flags of {_help_argv(parsed)}: {missing}"
    if _runs(command, parsed):
        done = _run(parsed, scratch)
        assert done.returncode == 0, done.stderr[-2000:]


def test_curl_pictures_are_written(scratch: Path) -> None:
    """The pictures the docs' curl lines send are those the documented command writes."""
    shapes = [c for c in COMMANDS if not c.inline and _parse(c).module == "examples.shapes"]
    assert shapes, "no page shows how to make the sample pictures"
    for command in shapes:
        assert _run(_parse(command), scratch).returncode == 0
    sent = {
        name
        for c in COMMANDS
        if c.text.startswith("curl")
        for name in re.findall(r"@/tmp/shapes/([\w.-]+)", c.text)
    }
    assert sent, "no curl line sends a sample picture"
    missing = sorted(n for n in sent if not (scratch / "shapes" / n).exists())
    assert not missing, f"sent by curl, not written by examples.shapes: {missing}"


def test_serve_flags_all_documented(helps: dict[str, tuple[int, str]]) -> None:
    """docs/serving.md's table names every flag of `autodep serve`."""
    code, text = helps[json.dumps(["autodep.cli", "serve", "--help"])]
    assert code == 0, text
    flags = set(re.findall(r"^\s+(--[a-z][\w-]*)", text, flags=re.M)) - {"--help"}
    page = (ROOT / "docs" / "serving.md").read_text()
    undocumented = sorted(f for f in flags if f"`{f}" not in page)
    assert not undocumented, f"flags missing from docs/serving.md: {undocumented}"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=[_name(p) for p in PAGES])
def test_links_and_paths_exist(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.exists() or (
            anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved)
        ):
            broken.append(target)
    for span in re.findall(r"`([^`\s]+)`", text):
        pattern = any(c in span for c in "*{<")
        if span.startswith(REPO_DIRS) and not pattern and not (ROOT / span.split("::")[0]).exists():
            broken.append(span)
    assert not broken, f"{_name(page)} names what does not exist: {broken}"
