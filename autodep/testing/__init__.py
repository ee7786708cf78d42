"""autodep's pytest plugin: start your model the way autodep's own tests do.

Installed with autodep (the `pytest11` entry point `autodep.testing`), or loaded
with `pytest -p autodep.testing`. Which model: a marker, else the command line.

    @pytest.mark.autodep_model("m.pt", max_workers=1)    # relative to the test file
    def test_it(autodep_server):                          # or: pytest --autodep-model m.pt
        urllib.request.urlopen(autodep_server.url + "/v2/health/ready")

Fixtures:
    autodep_server    a real `python -m autodep.serve --port 0` subprocess (`.url`,
                      `.pid`, `.log_path`); one per model and settings for the whole
                      session, stopped with SIGTERM at its end, which then checks
                      that it exited 0 and left no process behind
    autodep_blocking  an embedded, started `BlockingAutodep` (plain, non-async tests)
    autodep_service   an embedded, started `Autodep` (async tests; a pytest-asyncio
                      fixture, so it works in strict mode and in auto mode; there
                      only when pytest-asyncio is installed)

Marker keywords are `Autodep`'s settings (`max_workers=2`, `labels=...`,
`repository="models.yaml"`, ...); for the server they become flags
(`--max-workers 2`, `--config models.yaml`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from autodep import Autodep, BlockingAutodep
    from autodep.testing.server import ServerProcess

MARKER = "autodep_model"
OPTION = "--autodep-model"
# Marker keywords that are not one of `autodep.serve.FLAGS`, and their server flags.
FLAG_OF = {"labels": "--labels", "repository": "--config"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("autodep")
    group.addoption(
        OPTION,
        action="append",
        default=[],
        metavar="PATH",
        help="model file for the autodep fixtures when a test has no autodep_model marker "
        "(repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*paths, **settings): the model files (relative to the test file) and "
        "Autodep settings for the autodep fixtures",
    )


@dataclass(frozen=True)
class ModelSpec:
    """What to serve: model files and `Autodep` settings (hashable: one server each)."""

    paths: tuple[str, ...]
    settings: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.settings)

    def flags(self) -> list[str]:
        """The same as `python -m autodep.serve` flags."""
        from autodep.serve import FLAGS

        known = dict(FLAGS)
        known.pop("port")  # always 0: a free port, found by the server itself
        known.update(FLAG_OF)
        flags = [arg for path in self.paths for arg in ("--model", path)]
        for name, value in self.settings:
            if name not in known:
                pytest.fail(
                    f"@pytest.mark.{MARKER}: unknown setting {name!r} for a server; "
                    f"known: {', '.join(sorted(known))}",
                    pytrace=False,
                )
            flags += [known[name], str(value)]
        return flags


def model_spec(request: pytest.FixtureRequest) -> ModelSpec:
    """The nearest `autodep_model` marker's paths (else --autodep-model) and settings."""
    marker = request.node.get_closest_marker(MARKER)
    args: tuple[Any, ...] = marker.args if marker else ()
    settings = dict(marker.kwargs) if marker else {}
    if args:
        base = Path(request.node.path).parent
        paths = [base / str(arg) for arg in args]
    else:
        invoked = request.config.invocation_params.dir
        paths = [invoked / p for p in request.config.getoption(OPTION)]
    if "repository" in settings:
        settings["repository"] = str(Path(request.node.path).parent / settings["repository"])
    if not paths and "repository" not in settings:
        pytest.skip(f"no model to serve: give {OPTION} PATH or mark the test @{MARKER}(PATH)")
    return ModelSpec(tuple(str(p) for p in paths), tuple(sorted(settings.items())))


# -- a real server ----------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    """A running `python -m autodep.serve`."""

    url: str  # http://127.0.0.1:PORT
    pid: int
    log_path: Path


class Servers:
    """The session's servers, one per `ModelSpec`, started on first use."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: dict[ModelSpec, tuple[ServerProcess, LiveServer]] = {}

    def get(self, spec: ModelSpec) -> LiveServer:
        if spec not in self._started:
            from autodep.testing.server import ServerProcess

            log_path = self._directory / f"server-{len(self._started)}.log"
            process = ServerProcess(f"pytest-{len(self._started)}", spec.flags(), log_path)
            try:
                url = process.url()
            except RuntimeError as exc:
                process.stop()
                raise pytest.fail.Exception(f"autodep {exc}", pytrace=False) from None
            self._started[spec] = process, LiveServer(url, process.pid, log_path)
        return self._started[spec][1]

    def stop_all(self) -> None:
        """SIGTERM each; then each must exit 0 with nothing of it left running."""
        from autodep.testing.server import stop_all

        processes = [process for process, _ in self._started.values()]
        stop_all(processes)
        problems = []
        for process in processes:
            if process.process.returncode != 0:
                problems.append(
                    f"server {process.pid} exited with code {process.process.returncode} "
                    f"(its log: {process.log_path})"
                )
            if process.orphans:
                problems.append(f"server {process.pid} left processes {process.orphans} running")
        if problems:
            raise AssertionError("; ".join(problems))


@pytest.fixture(scope="session")
def autodep_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    servers = Servers(tmp_path_factory.mktemp("autodep"))
    yield servers
    servers.stop_all()


@pytest.fixture
def autodep_server(request: pytest.FixtureRequest, autodep_servers: Servers) -> LiveServer:
    """A real server of the test's model, shared by the tests that ask for the same."""
    return autodep_servers.get(model_spec(request))


# -- embedded ---------------------------------------------------------------------


@pytest.fixture
def autodep_blocking(request: pytest.FixtureRequest) -> Iterator[BlockingAutodep]:
    """`BlockingAutodep` with its workers ready; stopped after the test."""
    from autodep import BlockingAutodep

    spec = model_spec(request)
    with BlockingAutodep(list(spec.paths) or None, **spec.kwargs) as service:
        yield service


# Only with pytest-asyncio (a plugin must not break a pytest run that lacks it).
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def autodep_service(request: pytest.FixtureRequest) -> AsyncIterator[Autodep]:
        """`Autodep` with its workers ready, on the test's event loop; stopped after it."""
        from autodep import Autodep

        spec = model_spec(request)
        async with Autodep(list(spec.paths) or None, **spec.kwargs) as service:
            yield service
