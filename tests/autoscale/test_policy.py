"""The autoscaling policy on synthetic traces: no clock, no processes."""

from __future__ import annotations

import itertools

from autodep.autoscale.policy import Claim, Observation, Settings, decide, divide_budget

SERVICE_S = 0.1  # seconds of compute per request
SETTINGS = Settings(min_workers=0, max_workers=4, upscale_window_s=2, downscale_window_s=10)


def run(rates: list[float], start: int = 0, settings: Settings = SETTINGS) -> list[int]:
    """Feed one observation per 1 s tick (arrivals at `rate`, served at once) to the policy."""
    window: list[Observation] = []
    desired, history = start, []
    for t, rate in enumerate(rates):
        busy = min(rate * SERVICE_S, max(desired, 0))  # the workers cannot do more than exist
        window.append(
            Observation(
                t=float(t), arrivals=round(rate), busy_s=busy, in_flight=1 if rate else 0, queued=0
            )
        )
        window = [o for o in window if t - o.t <= settings.downscale_window_s]
        desired = decide(window, desired, SERVICE_S, settings).desired
        history.append(desired)
    return history


def test_no_traffic_with_zero_workers_stays_at_zero():
    assert run([0] * 30) == [0] * 30


def test_constant_load_settles_and_never_flaps():
    history = run([15] * 60)  # 1.5 worker-seconds per second
    assert history[0] == 2  # 1.5 / 0.8 -> 2 workers, on the first tick
    assert set(history) == {2}


def test_noisy_constant_load_does_not_reverse():
    rates = [15 + (3 if t % 3 == 0 else -3) for t in range(60)]  # 1.2 .. 1.8 w-s per s
    history = run(rates)
    changes = [b for a, b in itertools.pairwise(history) if a != b]
    assert all(later >= earlier for earlier, later in itertools.pairwise(history))
    assert len(changes) <= 1


def test_a_burst_scales_up_within_a_tick():
    history = run([2] * 10 + [30] * 10)
    assert history[9] == 1
    assert history[10] == 4  # 3 worker-seconds per second / 0.8 -> 4, at the burst's first tick


def test_drained_traffic_scales_down_after_the_long_window_and_to_zero():
    history = run([30] * 10 + [0] * 20)
    assert history[9] == 4
    assert history[10:19] == [4] * 9  # the long window still remembers the load
    assert history[21] == 0  # ... until it has passed: down to min_workers, here zero


def test_min_and_max_bound_the_count():
    bounded = Settings(min_workers=1, max_workers=2, upscale_window_s=2, downscale_window_s=10)
    assert run([0] * 5, settings=bounded) == [1] * 5
    assert max(run([100] * 5, settings=bounded)) == 2


def test_queued_requests_count_as_work():
    queued = Observation(t=0, arrivals=0, busy_s=1.0, in_flight=1, queued=20)
    assert decide([queued], 1, SERVICE_S, SETTINGS).desired == 4


def test_budget_goes_to_the_busy_model_and_every_model_with_traffic_keeps_one():
    shares = divide_budget(
        2, {"busy": Claim(desired=4, floor=1), "quiet": Claim(desired=1, floor=1)}
    )
    assert shares == {"busy": 1, "quiet": 1}
    shares = divide_budget(
        2, {"busy": Claim(desired=4, floor=1), "idle": Claim(desired=0, floor=0)}
    )
    assert shares == {"busy": 2, "idle": 0}
    shares = divide_budget(4, {"a": Claim(desired=3, floor=1), "b": Claim(desired=3, floor=1)})
    assert shares == {"a": 2, "b": 2}
    shares = divide_budget(1, {"a": Claim(desired=1, floor=1), "b": Claim(desired=1, floor=1)})
    assert shares == {"a": 1, "b": 1}  # floors are kept even beyond the budget


def test_current_need_beats_a_need_the_long_window_only_remembers():
    # "a" has a burst now; "z" is idle but its long window remembers needing two.
    claims = {
        "a": Claim(desired=2, floor=1, needed_now=17),
        "z": Claim(desired=2, floor=0, needed_now=0),
    }
    assert divide_budget(2, claims) == {"a": 2, "z": 0}
    assert divide_budget(3, claims) == {"a": 2, "z": 1}
