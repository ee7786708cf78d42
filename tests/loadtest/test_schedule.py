"""autodep.loadtest.schedule: rate shapes, arrivals, the model/payload mix, schedule files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from autodep.loadtest import schedule
from autodep.loadtest.schedule import Choice, Picker, Request, Shape


def times_of(requests: list[Request]) -> np.ndarray:
    return np.array([r.t for r in requests])


# -- shapes ----------------------------------------------------------------------


def test_defaults_are_filled_in_and_explicit_values_kept() -> None:
    spike = Shape("spike", rate=10, duration=100).resolved()
    assert (spike.peak, spike.at, spike.width) == (50, 40, 5)
    step = Shape("step", rate=10, duration=20, peak=15).resolved()
    assert (step.peak, step.at, step.width) == (15, 10, None)
    assert Shape("sine", rate=4, duration=60).resolved().period == 60
    assert Shape("poisson", rate=4, duration=60).resolved() == Shape("poisson", 4, 60)


def test_rate_functions() -> None:
    t = np.array([0.0, 4.9, 5.0, 6.9, 7.0, 10.0])
    spike = Shape("spike", rate=2, duration=10, peak=20, at=5, width=2).rate_fn()
    assert spike(t).tolist() == [2, 2, 20, 20, 2, 2]
    step = Shape("step", rate=2, duration=10, peak=6, at=5).rate_fn()
    assert step(t).tolist() == [2, 2, 6, 6, 6, 6]
    ramp = Shape("ramp", rate=2, duration=10, peak=12).rate_fn()
    assert ramp(np.array([0.0, 5.0, 10.0])).tolist() == [2, 7, 12]


def test_sine_starts_at_the_trough_averages_the_rate_and_stays_non_negative() -> None:
    sine = Shape("sine", rate=10, duration=60, peak=25, period=30).rate_fn()
    t = np.linspace(0, 60, 60_001)
    rates = sine(t)
    assert rates[0] == 0 and rates.min() >= 0
    assert rates.max() == pytest.approx(25)
    assert sine(np.array([15.0]))[0] == pytest.approx(25)  # the top at half a period
    gentle = Shape("sine", rate=10, duration=60, peak=15, period=30).rate_fn()
    assert gentle(t).mean() == pytest.approx(10, rel=1e-3)


# -- arrivals --------------------------------------------------------------------


def test_constant_arrivals_are_evenly_spaced() -> None:
    t = times_of(schedule.make(Shape("constant", rate=4, duration=10)))
    assert len(t) == 40
    assert t[0] == pytest.approx(0.125)
    assert np.diff(t) == pytest.approx(np.full(39, 0.25))


def test_poisson_is_seeded_and_has_the_rate() -> None:
    shape = Shape("poisson", rate=50, duration=100)
    first, again = schedule.make(shape, seed=3), schedule.make(shape, seed=3)
    assert first == again
    assert first != schedule.make(shape, seed=4)
    t = times_of(first)
    assert abs(len(t) - 5000) < 5 * np.sqrt(5000)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.02, rel=0.05)
    assert gaps.std() == pytest.approx(0.02, rel=0.1)  # exponential: std = mean
    assert t.min() >= 0 and t.max() < 100


def test_shaped_arrivals_follow_the_rate() -> None:
    spike = Shape("spike", rate=5, duration=20, peak=40, at=8, width=3)
    t = times_of(schedule.make(spike, arrivals="even"))
    assert len(t) == 5 * 17 + 40 * 3
    assert np.sum((t >= 8) & (t < 11)) == 120
    ramp = Shape("ramp", rate=0, duration=10, peak=20)
    t = times_of(schedule.make(ramp, arrivals="even"))
    assert len(t) == 100  # the area under the ramp
    assert np.sum(t < 5) == 25  # a quarter of it in the first half
    assert np.all(np.diff(t) >= 0)


def test_no_requests_at_rate_zero_and_bad_values_refused() -> None:
    assert schedule.make(Shape("constant", rate=0, duration=5)) == []
    with pytest.raises(ValueError, match="duration"):
        schedule.make(Shape("poisson", rate=1, duration=0))
    with pytest.raises(ValueError, match="arrival"):
        schedule.make(Shape("poisson", rate=1, duration=1), arrivals="bursty")
    with pytest.raises(ValueError, match="kind"):
        Shape("square", rate=1, duration=1).rate_fn()


# -- the mix ---------------------------------------------------------------------


def test_choices_parse_names_weights_and_bindings() -> None:
    assert Choice.parse("resnet18") == Choice("resnet18")
    assert Choice.parse("resnet18:3") == Choice("resnet18", 3.0)
    assert Choice.parse("imgs/a:b.jpg") == Choice("imgs/a:b.jpg")  # not a weight
    assert Choice.parse("bert=q.txt:2", bindable=True) == Choice("q.txt", 2.0, "bert")
    assert Choice.parse("x=y.txt") == Choice("x=y.txt")  # models are never bound
    with pytest.raises(ValueError, match="positive"):
        Choice.parse("a:0")


def test_smooth_round_robin_interleaves_by_weight() -> None:
    picker = Picker([Choice("a", 2), Choice("b", 1)], "round-robin", np.random.default_rng(0))
    assert [picker.pick() for _ in range(6)] == ["a", "b", "a", "a", "b", "a"]
    assert Picker([], "round-robin", np.random.default_rng(0)).pick() is None


def test_random_mix_is_seeded_and_weighted() -> None:
    def picks(seed: int) -> list[str | None]:
        picker = Picker([Choice("a", 3), Choice("b", 1)], "random", np.random.default_rng(seed))
        return [picker.pick() for _ in range(4000)]

    assert picks(1) == picks(1) != picks(2)
    assert Counter(picks(1))["a"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_payloads_go_only_to_their_models() -> None:
    requests = schedule.make(
        Shape("constant", rate=10, duration=2),
        models=[Choice("img"), Choice("txt")],
        payloads=[Choice("a.jpg", model="img"), Choice("q.txt", model="txt"), Choice("b.png")],
    )
    pairs = Counter((r.model, r.payload) for r in requests)
    assert set(pairs) == {("img", "a.jpg"), ("img", "b.png"), ("txt", "q.txt"), ("txt", "b.png")}
    assert all(n == 5 for n in pairs.values())
    with pytest.raises(ValueError, match="not in --model"):
        schedule.make(Shape("constant", 1, 1), payloads=[Choice("a.jpg", model="gone")])


def test_the_mix_never_moves_the_arrival_times() -> None:
    shape = Shape("poisson", rate=20, duration=5)
    plain = schedule.make(shape, seed=9)
    mixed = schedule.make(shape, seed=9, models=[Choice("a"), Choice("b")], mix="random")
    assert times_of(plain).tolist() == times_of(mixed).tolist()
    assert {r.model for r in plain} == {None} and {r.payload for r in plain} == {None}


# -- files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s.jsonl", "s.csv"])
def test_save_and_load_round_trip(tmp_path: Path, name: str) -> None:
    requests = schedule.make(
        Shape("poisson", rate=20, duration=3),
        models=[Choice("a"), Choice("b")],
        payloads=[Choice("x.jpg")],
    )
    requests.append(Request(3.5, None, None))
    path = tmp_path / name
    schedule.save(path, requests, {"kind": "poisson", "seed": 0})
    assert schedule.load(path) == requests
    assert schedule.load_meta(path) == {"kind": "poisson", "seed": 0}
    assert schedule.load_meta(tmp_path / "other.jsonl") == {}


def test_replay_reads_timestamps_shifts_sorts_and_speeds_up(tmp_path: Path) -> None:
    with_header = tmp_path / "trace.csv"
    with_header.write_text("id,t\n1,100.5\n2,100.0\n3,102.0\n")
    assert schedule.replay_times(with_header).tolist() == [0, 0.5, 2]
    assert schedule.replay_times(with_header, speed=2).tolist() == [0, 0.25, 1]
    assert schedule.replay_times(with_header, column="id").tolist() == [0, 1, 2]
    bare = tmp_path / "bare.csv"
    bare.write_text("7.0\n5.0\n\n6.5\n")
    assert schedule.replay_times(bare).tolist() == [0, 1.5, 2]
    requests = schedule.replay(with_header, [Choice("m")], duration=1.0)
    assert requests == [Request(0.0, "m", None), Request(0.5, "m", None)]
    with pytest.raises(ValueError, match="no column"):
        schedule.replay_times(with_header, column="time")
