"""The pure parts of autodep.repository: version policy, lifecycle, in-flight requests, polling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from autodep.config import ModelConfig, VersionPolicy, load_repository, model_from_entry
from autodep.errors import ConfigError
from autodep.repository.inflight import InFlight
from autodep.repository.policy import chosen, select_versions
from autodep.repository.poll import Plan, Quiet, Watched, plan
from autodep.repository.retention import kept
from autodep.repository.versions import ModelVersion, State, TransitionError


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(latest=1), [7]),
        (VersionPolicy(latest=2), [3, 7]),
        (VersionPolicy(latest=9), [1, 3, 7]),
        (VersionPolicy(specific=(1, 7)), [1, 7]),
    ],
)
def test_version_policy(policy, expected):
    assert chosen([3, 1, 7], policy) == expected


def test_each_selected_version_is_an_entry_of_its_own():
    entry = ModelConfig(
        name="m",
        versions={1: Path("a.pt"), 2: Path("b.pt"), 3: Path("c.pt")},
        version_policy=VersionPolicy(latest=2),
    )
    assert entry.path == Path("c.pt")  # path defaults to the newest version's file
    versions = select_versions(entry)
    assert {n: v.path for n, v in versions.items()} == {2: Path("b.pt"), 3: Path("c.pt")}
    assert all(not v.versions for v in versions.values())
    assert select_versions(ModelConfig(name="m", path=Path("x.pt"))) == {
        1: ModelConfig(name="m", path=Path("x.pt"))
    }


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("{name: a, versions: {1: m.pt}, version_policy: {specific: [2]}}", "version 2"),
        ("{name: a, versions: {0: m.pt}}", "versions: version numbers must be 1 or more, not 0"),
        ("{name: a, path: m.pt, version_policy: {latest: 0}}", "version_policy.latest"),
        ("{name: a, path: m.pt, version_policy: {latest: 1, specific: [1]}}", "exactly one"),
        ("{name: a, versions: {1: m.pt, 2: gone.pt}}", "versions.2: no such file"),
        ("{name: a, path: m.pt, workers: {max: zero}}", "workers.max"),
    ],
)
def test_bad_versions_name_file_model_field_and_value(tmp_path, entry, words):
    (tmp_path / "m.pt").write_bytes(b"")
    path = tmp_path / "models.yaml"
    path.write_text(f"models: [{entry}]")
    with pytest.raises(ConfigError) as caught:
        load_repository(path)
    message = caught.value.message
    assert str(path) in message and "model 'a'" in message and words in message, message


def test_a_bad_value_in_a_load_request_is_quoted():
    entry = {"name": "a", "path": "m.pt", "workers": {"max": "zero"}}
    with pytest.raises(ConfigError, match=r"load request: model 'a': workers\.max: .*not 'zero'"):
        model_from_entry(entry, Path("."), "load request")


def test_version_lifecycle_allows_only_its_transitions():
    seen = []
    version = ModelVersion("m", 2, on_change=lambda v: seen.append(v.state))
    assert (version.state, version.live) == (State.LOADING, True)
    assert version.index_entry() == {
        "name": "m",
        "version": "2",
        "state": "LOADING",
        "reason": "loading",
    }
    with pytest.raises(TransitionError):
        version.to(State.DRAINING, "not loaded yet")
    version.to(State.READY, "warm")
    assert version.index_entry()["reason"] == ""
    version.to(State.DRAINING, "replaced")
    assert version.index_entry()["state"] == "UNLOADING"
    version.to(State.UNLOADED, "stopped")
    assert not version.live
    with pytest.raises(TransitionError):
        version.to(State.READY, "again")
    assert seen == [State.LOADING, State.READY, State.DRAINING, State.UNLOADED]
    assert [t["state"] for t in version.status()["transitions"]] == [
        "loading",
        "ready",
        "draining",
        "unloaded",
    ]
    failed = ModelVersion("m", 3)
    failed.to(State.FAILED, "bad file")
    assert failed.index_entry() == {
        "name": "m",
        "version": "3",
        "state": "UNAVAILABLE",
        "reason": "bad file",
    }


async def test_in_flight_waits_only_for_requests_that_started_before_the_change():
    flights = InFlight()
    before = flights.request()
    before.__enter__()
    change = flights.advance()
    with flights.request():  # started after the change: not waited for
        waiting = asyncio.ensure_future(flights.settled(change))
        await asyncio.sleep(0)  # let it start waiting (one loop turn, not a timed wait)
        assert not waiting.done()
        before.__exit__(None, None, None)
        await asyncio.wait_for(waiting, 5)
    assert flights.count == 0
    await asyncio.wait_for(flights.settled(flights.advance()), 5)  # nothing in flight


def test_quiet_acts_once_a_change_has_stopped():
    a, b, c = (("f", (1, 10)),), (("f", (2, 20)),), (("f", (3, 30)),)
    quiet = Quiet(a)
    assert not quiet.settled(a)  # nothing new
    assert not quiet.settled(b)  # changed: still being written?
    assert not quiet.settled(c)  # changed again
    assert quiet.settled(c)  # the same twice: act
    assert not quiet.settled(c)  # once
    quiet.retry()
    assert quiet.settled(c)


def test_poll_plan():
    one = ModelConfig(name="one", path=Path("1.pt"))
    two = ModelConfig(name="two", path=Path("2.pt"))
    before = {"one": Watched(one, (("1.pt", (1, 1)),)), "two": Watched(two, ())}
    after = {
        "one": Watched(one, (("1.pt", (2, 1)),)),  # its file changed
        "three": Watched(ModelConfig(name="three", path=Path("3.pt")), ()),
    }
    assert plan(before, after) == Plan(load=("one", "three"), unload=("two",))
    assert plan(before, before) == Plan()


def test_history_keeps_live_versions_and_the_newest_finished_ones():
    def finished(model: str, number: int, state: State) -> ModelVersion:
        record = ModelVersion(model, number)
        if state is State.FAILED:
            record.to(State.FAILED, "broken")
        else:
            record.to(State.READY, "ok")
            record.to(State.DRAINING, "replaced")
            record.to(State.UNLOADED, "stopped")
        return record

    serving = ModelVersion("serving", 1)
    serving.to(State.READY, "ok")
    failures = [finished(f"bad{n}", 1, State.FAILED) for n in range(5)]
    reloaded = finished("serving", 1, State.UNLOADED)  # older than nothing live: shown
    records = [serving, *failures, reloaded]
    assert kept(records, history=3) == [serving, failures[3], failures[4], reloaded]
    newer = ModelVersion("serving", 1)  # a live load newer than the unloaded one hides it
    assert kept([*records, newer], history=3) == [serving, *failures[2:], newer]
    retried = finished("bad4", 1, State.FAILED)  # per model and number, only the newest
    assert kept([*records, retried], history=2) == [serving, reloaded, retried]
