"""Timing harness: warm up, repeat, drop outliers, and repeat more while the spread is wide.

Why: on a shared, noisy machine single timings lie.  The median of many runs
after Tukey-fence outlier removal is robust, and the interquartile range of
the kept runs says how far to trust it.  The statistics are a pure function
(`summarize`) so they can be checked on synthetic timings.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

__all__ = ["Measurement", "Summary", "measure", "measure_interleaved", "quantile", "summarize"]

#: A round stops after this many calls even if min_time_s is not reached (a bound for ~zero-cost fns).
MAX_CALLS_PER_ROUND = 100_000


@dataclass(frozen=True)
class Measurement:
    """Robust latency of one callable: median and IQR of the kept runs, with bookkeeping."""

    median_ms: float
    spread_ms: float  #: interquartile range of the kept runs
    runs: int  #: timed runs kept after outlier removal
    rounds: int  #: timing rounds run (more when the spread stayed wide)
    discarded: int  #: timed runs dropped as outliers

    @property
    def rel_spread(self) -> float:
        """spread_ms / median_ms (0 when both are 0, inf when only the median is 0)."""
        if self.median_ms > 0:
            return self.spread_ms / self.median_ms
        return 0.0 if self.spread_ms == 0 else math.inf


class Summary(NamedTuple):
    """What `summarize` returns: median and IQR of the kept values, and the counts."""

    median: float
    spread: float
    kept: int
    discarded: int


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default, 'inclusive')."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("quantile of no values")
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(times_ms: Sequence[float]) -> Summary:
    """Drop values outside the Tukey fences [Q1 - 1.5 IQR, Q3 + 1.5 IQR]; median and IQR of the rest."""
    if len(times_ms) == 0:
        raise ValueError("summarize needs at least one timing")
    values = sorted(float(t) for t in times_ms)
    q1, q3 = quantile(values, 0.25), quantile(values, 0.75)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    kept = [v for v in values if low <= v <= high]
    median = quantile(kept, 0.5)
    spread = quantile(kept, 0.75) - quantile(kept, 0.25)
    return Summary(median=median, spread=spread, kept=len(kept), discarded=len(values) - len(kept))


def _check_options(warmup: int, min_runs: int, min_time_s: float, max_rounds: int, target_rel_spread: float) -> None:
    for name, value, least in (("warmup", warmup, 0), ("min_runs", min_runs, 1), ("max_rounds", max_rounds, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    for name, value in (("min_time_s", min_time_s), ("target_rel_spread", target_rel_spread)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def measure(fn: Callable[[], object], *, warmup: int = 5, min_runs: int = 15, min_time_s: float = 0.05,
            max_rounds: int = 4, target_rel_spread: float = 0.05,
            sync: Callable[[], None] | None = None) -> Measurement:
    """Time `fn` robustly: `warmup` untimed calls, then rounds of timed calls.

    A round runs until it has at least `min_runs` calls and `min_time_s` of timed
    work (or MAX_CALLS_PER_ROUND calls).  After each round the runs so far are summarized; another round follows
    while the kept runs' IQR / median exceeds `target_rel_spread`, up to
    `max_rounds`.  `sync` (e.g. torch.cuda.synchronize) runs before the clock
    stops so asynchronous work is counted.  The garbage collector is paused while
    timing so its pauses do not land in random runs.
    """
    _check_options(warmup, min_runs, min_time_s, max_rounds, target_rel_spread)
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    min_round_ns = min_time_s * 1e9
    times_ms: list[float] = []
    rounds = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while True:
            rounds += 1
            calls, spent_ns = 0, 0
            while calls < min_runs or (spent_ns < min_round_ns and calls < MAX_CALLS_PER_ROUND):
                start = time.perf_counter_ns()
                fn()
                if sync is not None:
                    sync()
                took = time.perf_counter_ns() - start
                times_ms.append(took / 1e6)
                spent_ns += took
                calls += 1
            summary = summarize(times_ms)
            done = Measurement(median_ms=summary.median, spread_ms=summary.spread, runs=summary.kept,
                               rounds=rounds, discarded=summary.discarded)
            if done.rel_spread <= target_rel_spread or rounds >= max_rounds:
                return done
    finally:
        if gc_was_enabled:
            gc.enable()


def measure_interleaved(fns: Sequence[Callable[[], object]], *, warmup: int = 2, min_runs: int = 4,
                        burst: int = 5, max_rounds: int = 2, target_rel_spread: float = 0.10,
                        sync: Callable[[], None] | None = None) -> list[Measurement]:
    """Time several callables in rotation, a burst of back-to-back calls per visit.

    What is measured is the warm, steady-state latency of each callable run alone, the quantity a
    benchmark tool such as ``torch.utils.benchmark`` reports: each visit makes one untimed call
    (which brings the callable's weights back into cache after the other members evicted them)
    and then `burst` timed calls back to back; the result is the median of all timed calls.
    Timing one call per visit instead measured a cold-cache latency: 6% above a plain timing for
    table units and 3% for whole networks on this machine (benchmarks/latency_truth.py).

    Why rotation: a shared machine's speed drifts from one second to the next (8% between
    one-second slices here). In rotation, every callable's runs are spread over the same stretch
    of time, so a slow second is shared by all of them instead of landing on one. A round is
    `min_runs` visits to each member; after each round, the members whose kept runs' IQR / median
    still exceeds `target_rel_spread` go round again (only those), up to `max_rounds`.
    """
    _check_options(warmup, min_runs, 0.0, max_rounds, target_rel_spread)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
    for fn in fns:
        for _ in range(warmup):
            fn()
    if sync is not None:
        sync()
    times: list[list[float]] = [[] for _ in fns]
    results: list[Measurement | None] = [None] * len(fns)
    active = list(range(len(fns)))
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        rounds = 0
        while active:
            rounds += 1
            for _ in range(min_runs):
                for i in active:
                    fn, out = fns[i], times[i]
                    fn()  # untimed: warms this member's cache after the others ran
                    if sync is not None:
                        sync()
                    for _ in range(burst):
                        start = clock()
                        fn()
                        if sync is not None:
                            sync()
                        out.append((clock() - start) / 1e6)
            wide = []
            for i in active:
                summary = summarize(times[i])
                results[i] = Measurement(median_ms=summary.median, spread_ms=summary.spread, runs=summary.kept,
                                         rounds=rounds, discarded=summary.discarded)
                if results[i].rel_spread > target_rel_spread and rounds < max_rounds:
                    wide.append(i)
            active = wide
    finally:
        if gc_was_enabled:
            gc.enable()
    return [r for r in results if r is not None]
