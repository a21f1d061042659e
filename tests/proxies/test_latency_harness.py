"""proxies.latency.harness: exact statistics on synthetic timings, and the round logic on a scripted clock."""
from __future__ import annotations

import math
import random
from types import SimpleNamespace
from typing import Iterable, Iterator

import numpy as np
import pytest
import torch

from proxies.latency import (LatencyError, Measurement, Summary, measure, measure_interleaved, pinned_threads,
                             summarize)
from proxies.latency import harness
from proxies.latency.harness import quantile


# --- summarize: pure statistics ---------------------------------------------------------------


def test_summarize_drops_a_high_outlier():
    # Q1 3.25, Q3 7.75, IQR 4.5 -> fences [-3.5, 14.5]: 100 is out; kept 1..9 -> median 5, IQR 7 - 3
    assert summarize([1, 2, 3, 4, 5, 6, 7, 8, 9, 100]) == Summary(median=5.0, spread=4.0, kept=9, discarded=1)


def test_summarize_drops_outliers_on_both_sides_in_any_order():
    times = [11, 10, 50, 10, 11, 0.1, 10, 11, 10, 11]
    # sorted: 0.1, 10 x4, 11 x4, 50 -> Q1 10, Q3 11, fences [8.5, 12.5]; kept 10 x4 and 11 x4
    assert summarize(times) == Summary(median=10.5, spread=1.0, kept=8, discarded=2)


def test_summarize_keeps_everything_when_nothing_is_outlying():
    assert summarize([2.0, 1.0, 3.0, 4.0]) == Summary(median=2.5, spread=1.5, kept=4, discarded=0)
    assert summarize([3.0]) == Summary(median=3.0, spread=0.0, kept=1, discarded=0)


def test_summarize_with_zero_iqr_keeps_only_the_mode():
    assert summarize([1.0] * 9 + [1.5]) == Summary(median=1.0, spread=0.0, kept=9, discarded=1)


def test_summarize_rejects_no_timings():
    with pytest.raises(ValueError, match="^summarize needs at least one timing$"):
        summarize([])


def test_quantile_matches_numpy_linear_interpolation():
    rng = random.Random(0)
    for n in (1, 2, 3, 10, 101):
        values = sorted(rng.uniform(0, 10) for _ in range(n))
        for q in (0.0, 0.25, 0.5, 0.75, 1.0):
            assert quantile(values, q) == pytest.approx(float(np.percentile(values, q * 100)), abs=1e-12)


def test_rel_spread():
    assert Measurement(median_ms=2.0, spread_ms=0.5, runs=10, rounds=1, discarded=0).rel_spread == 0.25
    assert Measurement(median_ms=0.0, spread_ms=0.0, runs=1, rounds=1, discarded=0).rel_spread == 0.0
    assert Measurement(median_ms=0.0, spread_ms=1.0, runs=1, rounds=1, discarded=0).rel_spread == math.inf


# --- measure: a scripted clock --------------------------------------------------------------------


class ScriptedClock:
    """A fake perf_counter_ns; each fn() call advances it by the next scripted duration (ms)."""

    def __init__(self, durations_ms: Iterable[float]) -> None:
        self.now = 0
        self.durations: Iterator[float] = iter(durations_ms)
        self.calls = 0
        self.syncs = 0

    def perf_counter_ns(self) -> int:
        return self.now

    def fn(self) -> None:
        self.calls += 1
        self.now += round(next(self.durations) * 1_000_000)

    def sync(self) -> None:
        self.syncs += 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    def install(durations_ms: Iterable[float]) -> ScriptedClock:
        fake = ScriptedClock(durations_ms)
        monkeypatch.setattr(harness, "time", SimpleNamespace(perf_counter_ns=fake.perf_counter_ns))
        return fake

    return install


def forever(*values: float) -> Iterator[float]:
    while True:
        yield from values


def test_steady_timings_need_one_round(clock):
    c = clock(forever(1.0))
    m = measure(c.fn, warmup=5, min_runs=15, min_time_s=0.0, max_rounds=4)
    assert m == Measurement(median_ms=1.0, spread_ms=0.0, runs=15, rounds=1, discarded=0)
    assert c.calls == 5 + 15


def test_wide_spread_runs_more_rounds_and_stops_at_max_rounds(clock):
    c = clock(forever(1.0, 2.0))  # IQR / median = 1 / 1.5, never below 5%
    m = measure(c.fn, warmup=0, min_runs=15, min_time_s=0.0, max_rounds=3, target_rel_spread=0.05)
    assert m.rounds == 3
    assert m.runs + m.discarded == 45 and m.discarded == 0
    assert m.median_ms == 1.0 and m.spread_ms == 1.0  # 23 x 1.0 and 22 x 2.0
    assert c.calls == 45


def test_rounds_stop_once_the_spread_settles(clock):
    # round 1: 1, 2, 1, 2, ... (8 x 1.0, 7 x 2.0: wide); round 2: 15 x 1.0.
    # All 30 runs: Q1 = Q3 = 1.0, so the seven 2.0 runs are outliers and the kept runs have no spread.
    c = clock([1.0] * 5 + [1.0, 2.0] * 7 + [1.0] + [1.0] * 100)
    m = measure(c.fn, warmup=5, min_runs=15, min_time_s=0.0, max_rounds=4, target_rel_spread=0.05)
    assert m == Measurement(median_ms=1.0, spread_ms=0.0, runs=23, rounds=2, discarded=7)


def test_min_time_extends_a_round(clock):
    c = clock(forever(1.0))
    m = measure(c.fn, warmup=0, min_runs=1, min_time_s=0.010, max_rounds=1)
    assert m.runs == 10 and m.rounds == 1


def test_sync_runs_inside_every_timed_call(clock):
    c = clock(forever(0.5))
    m = measure(c.fn, warmup=3, min_runs=7, min_time_s=0.0, sync=c.sync)
    assert m.runs == 7
    assert c.syncs == 1 + 7  # once after warm-up, then before each clock stop


def test_measure_restores_the_garbage_collector(clock):
    import gc

    c = clock(forever(1.0))
    assert gc.isenabled()
    measure(c.fn, warmup=0, min_runs=3, min_time_s=0.0)
    assert gc.isenabled()


@pytest.mark.parametrize("kwargs, message", [
    ({"min_runs": 0}, "min_runs must be an integer >= 1, got 0"),
    ({"warmup": -1}, "warmup must be an integer >= 0, got -1"),
    ({"max_rounds": 1.5}, "max_rounds must be an integer >= 1, got 1.5"),
    ({"min_time_s": -0.1}, "min_time_s must be a finite number >= 0, got -0.1"),
    ({"target_rel_spread": float("nan")}, "target_rel_spread must be a finite number >= 0, got nan"),
])
def test_measure_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError) as info:
        measure(lambda: None, **kwargs)
    assert str(info.value) == message


# --- measure_interleaved: rotation on a scripted clock ------------------------------------------


class Rotation:
    """Callables that log their calls and advance a shared fake clock by their own scripted durations."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, durations: dict[str, Iterable[float]]) -> None:
        self.now = 0
        self.log: list[str] = []
        self.durations = {name: iter(d) for name, d in durations.items()}
        monkeypatch.setattr(harness, "time", SimpleNamespace(perf_counter_ns=lambda: self.now))

    def fn(self, name: str):
        def call() -> None:
            self.log.append(name)
            self.now += round(next(self.durations[name]) * 1_000_000)
        return call


def test_interleaved_calls_each_callable_in_turn_warm_call_then_burst(monkeypatch):
    r = Rotation(monkeypatch, {"a": forever(1.0), "b": forever(2.0), "c": forever(3.0)})
    ms = measure_interleaved([r.fn("a"), r.fn("b"), r.fn("c")], warmup=2, min_runs=4, burst=3, max_rounds=1)
    visit = lambda name: [name] * 4  # noqa: E731  one untimed warm call, then a burst of 3 timed calls
    assert r.log == ["a", "a", "b", "b", "c", "c"] + (visit("a") + visit("b") + visit("c")) * 4
    assert [m.median_ms for m in ms] == [1.0, 2.0, 3.0]
    assert all(m.runs == 12 and m.rounds == 1 and m.discarded == 0 for m in ms)


def test_interleaved_times_warm_calls_not_the_cold_first_call_of_a_visit(monkeypatch):
    # Each visit's first call finds the cache cold (the other member evicted it) and takes 3 ms;
    # the calls right after it take 1 ms. The figure is the warm, back-to-back latency.
    cold_then_warm = lambda: iter(([3.0] + [1.0] * 4) * 20)  # noqa: E731
    r = Rotation(monkeypatch, {"a": cold_then_warm(), "b": cold_then_warm()})
    a, b = measure_interleaved([r.fn("a"), r.fn("b")], warmup=0, min_runs=5, burst=4, max_rounds=1)
    assert a.median_ms == b.median_ms == 1.0 and a.runs == 20
    r = Rotation(monkeypatch, {"a": iter([3.0, 1.0] * 5), "b": iter([3.0, 1.0] * 5)})
    one = measure_interleaved([r.fn("a"), r.fn("b")], warmup=0, min_runs=5, burst=1, max_rounds=1)
    assert [m.median_ms for m in one] == [1.0, 1.0]  # a burst of one still follows the visit's warm call


def test_interleaved_gives_only_the_wide_callables_another_round(monkeypatch):
    r = Rotation(monkeypatch, {"steady": forever(1.0), "wide": forever(1.0, 3.0)})
    steady, wide = measure_interleaved([r.fn("steady"), r.fn("wide")], warmup=0, min_runs=4, burst=2, max_rounds=3,
                                       target_rel_spread=0.10)
    assert r.log == (["steady"] * 3 + ["wide"] * 3) * 4 + ["wide"] * 24  # rounds 2 and 3 time only the wide one
    assert steady == Measurement(median_ms=1.0, spread_ms=0.0, runs=8, rounds=1, discarded=0)
    assert (wide.rounds, wide.runs + wide.discarded, wide.median_ms) == (3, 24, 2.0)


def test_interleaved_spreads_a_slow_spell_over_every_callable(monkeypatch):
    # Two equal callables; the machine is 3x slower for the first 20 calls. Timed one after the
    # other, the first takes all of the slow spell; in rotation both see the same share.
    shared = iter([3.0] * 20 + [1.0] * 100)
    r = Rotation(monkeypatch, {"a": shared, "b": shared})
    a, b = measure_interleaved([r.fn("a"), r.fn("b")], warmup=0, min_runs=10, burst=1, max_rounds=1)
    assert a.median_ms == b.median_ms
    c = ScriptedClock(iter([3.0] * 10 + [1.0] * 100))
    monkeypatch.setattr(harness, "time", SimpleNamespace(perf_counter_ns=c.perf_counter_ns))
    alone = [measure(c.fn, warmup=0, min_runs=10, min_time_s=0.0, max_rounds=1).median_ms for _ in range(2)]
    assert alone == [3.0, 1.0]


def test_interleaved_syncs_after_every_call_and_restores_gc(monkeypatch):
    import gc

    r = Rotation(monkeypatch, {"a": forever(1.0), "b": forever(1.0)})
    syncs = []
    measure_interleaved([r.fn("a"), r.fn("b")], warmup=1, min_runs=3, burst=2, max_rounds=1,
                        sync=lambda: syncs.append(1))
    assert len(syncs) == 1 + 2 * 3 * (1 + 2) and gc.isenabled()


def test_interleaved_rejects_bad_options_and_accepts_nothing_to_time():
    with pytest.raises(ValueError, match="min_runs must be an integer >= 1, got 0"):
        measure_interleaved([lambda: None], min_runs=0)
    with pytest.raises(ValueError, match="burst must be an integer >= 1, got 0"):
        measure_interleaved([lambda: None], burst=0)
    assert measure_interleaved([]) == []


def test_measure_on_the_real_clock_gives_a_positive_median():
    m = measure(lambda: sum(range(2000)), warmup=2, min_runs=10, min_time_s=0.0, max_rounds=2)
    assert 0 < m.median_ms < 100 and math.isfinite(m.spread_ms)
    assert m.runs + m.discarded >= 10 and 1 <= m.rounds <= 2


# --- pinned_threads ------------------------------------------------------------------------------


def test_pinned_threads_sets_and_restores():
    before = torch.get_num_threads()
    with pinned_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), pinned_threads(2):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_pinned_threads_rejects_zero():
    with pytest.raises(LatencyError) as info, pinned_threads(0):
        pass
    assert str(info.value) == "threads must be a positive integer, got 0"
