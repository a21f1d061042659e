"""The winner check: the best Pareto point that meets the target when measured end to end.

Predictions come from a table; the winner is the one architecture a user will
time, so the report measures front points (each alone, warm back-to-back calls,
reshuffled passes, median) and takes the best-objective one that meets the
target, saying so when the prediction alone was wrong. The measurements also
say how far off the predictions are near the target: later rounds rescale the
predictions by what was measured and try the next points, so a table that
under- or over-predicts still ends with a winner close to the target instead
of the front's fastest point. Measured means at the machine's speed during the
check, so a machine that sped up or slowed down since the search predicted is
one more bias those rounds follow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from nas.latency import LatencyModel, MissingEntryError
from nas.space import SearchSpace

MAX_WINNER_TRIES = 6  # points the first round measures together (the best by objective and the fastest)
ROUND_TRIES = 4  # points each later round measures
MAX_ROUNDS = 3
# A point measured over the bound by at most this much is measured once more in the next round and judged
# by the mean of both: one reading decided it. In five searches (2026-12-04) two winners used 78% and 81%
# of their targets because the point above them read 0.1% and 2% over the bound as timed, once.
SECOND_LOOK = 0.10
WINNER_PASSES = 3
# The winner must measure this much under the target. One network's median, timed again minutes
# later on this 2-core machine, read 1-17% apart (5 winners against torch.utils.benchmark, both put
# at the table's speed level); without a guard the best point that just met the target is, more
# often than not, one that happened to measure low (the winner's curse), and a user's timing misses.
WINNER_GUARD = 0.05

# Measures trial numbers together: (median, spread) in ms for each, in order, or (median, spread,
# as timed) where a plain timing's figure differs from the median the check judges by.
Measure = Callable[[list[int]], list[tuple[float, ...]]]


@dataclass
class WinnerCheck:
    """What the check found: the winner (None when the front is empty), every point measured, why the
    winner is not simply the best prediction, the machine's speed during the check, and measured over
    predicted latency on the points measured (the median; None when nothing was measured)."""

    winner: dict[str, Any] | None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    machine_speed: float | None = None  # during the winner's round of the check; > 1: slower than the table's level
    measured_over_predicted: float | None = None
    # The slowest and fastest the network probe read during the check, against the table's level: a
    # plain timing of the winner moves with the machine over (about) measured_level_ms x this range.
    machine_speed_range: tuple[float, float] | None = None
    # The winner's figure at the level times that range: what a plain timing of it reads, fastest to
    # slowest, while the machine runs as it did during the check.
    plain_timing_range_ms: tuple[float, float] | None = None
    # Set when the slow end of that range is over the target: the check cannot vouch for a plain timing.
    caution: str | None = None


def _point(row: Any) -> dict[str, Any]:
    point = {"number": int(row.number), "arch": row.arch, "macs": int(row.macs), "params": int(row.params),
             "objective": float(row.objective), "predicted_latency_ms": float(row.predicted_latency_ms),
             "measured_latency_ms": None}
    searched = getattr(row, "searched_latency_ms", None)
    if searched is not None and not pd.isna(searched) and not math.isclose(searched, point["predicted_latency_ms"]):
        point["searched_latency_ms"] = float(searched)  # the search's figure, before the table changed
    return point


def repredicted(trials: pd.DataFrame, space: SearchSpace, arch_of: Callable[[int], Mapping[str, Any]],
                latency: LatencyModel, speed: float) -> pd.DataFrame:
    """`trials` with each completed trial's prediction taken again from the table as it is now, at the
    search's speed (`speed`), and the search's own figure kept as `searched_latency_ms`. Units a busy
    machine slowed through every try are timed again after the trials (`TableTimer.settle_disturbed`);
    the check ranks its candidates by the table after that. In one search-filled benchmark run 300 units
    were timed again, and its front, measured 12% over the search's predictions, was 2% over the
    table's afterwards (and 16% against 0% in a make run). A trial whose units the table lacks (a
    report on a table without measuring) keeps the search's figure."""
    out = trials.copy()
    out["searched_latency_ms"] = out["predicted_latency_ms"]
    done = (out["state"] == "COMPLETE") & out["predicted_latency_ms"].notna()
    for i in out.index[done]:
        try:
            out.at[i, "predicted_latency_ms"] = latency.predict_ms(space, arch_of(int(out.at[i, "number"]))) * speed
        except MissingEntryError:
            pass
    return out


def _ratio(measured: list[dict[str, Any]]) -> float:
    """Measured over predicted latency, the median over the points measured so far (1 when none has a
    positive prediction)."""
    ratios = [p["measured_latency_ms"] / p["predicted_latency_ms"] for p in measured if p["predicted_latency_ms"] > 0]
    return float(np.median(ratios)) if ratios else 1.0


def choose_winner(front: pd.DataFrame, target_ms: float, measure: Measure | None, guard: float = WINNER_GUARD
                  ) -> tuple[dict[str, Any] | None, list[dict]]:
    """The best-objective point of `front` whose end-to-end measurement meets the target with room to
    spare: at most target / (1 + `guard`) (`WINNER_GUARD`), the bound every rule below uses.

    Round 1 measures, in one call (reshuffled passes, so a slow minute of the machine is shared by
    all of them), the best MAX_WINNER_TRIES - 1 points by objective predicted within the bound and
    the front's fastest point (the likeliest to meet it). Each later round (up to MAX_ROUNDS in all)
    rescales every prediction by the median measured / predicted so far and measures the best
    ROUND_TRIES points not yet measured that then fall within the bound and beat the best point
    measured within it, after any point that beat that and read at most SECOND_LOOK over the bound
    once: those are measured once more and judged by the mean of both readings. It stops when there
    are none. `measure(numbers)` returns (median, spread) in ms for each, or (median, spread, as
    timed): a point then meets the target, or the bound, only when both its median and its figure as
    timed do, so that no winner's own plain timing is over it.
    Without a measure function the best point wins on its prediction alone (the caller passes the
    feasible front then).
    """
    rows = [_point(r) for r in front.iloc[::-1].itertuples(index=False)]  # best objective first
    if not rows:
        return None, []
    if measure is None:
        return rows[0], []
    bound = target_ms / (1 + guard)
    measured: list[dict[str, Any]] = []
    ratio = 1.0
    for round_ in range(MAX_ROUNDS):
        met = [p for p in measured if p["within_guard"]]
        floor = max((p["objective"] for p in met), default=-np.inf)
        again = [p for p in measured if not p["within_guard"] and p["objective"] > floor
                 and len(p["judged_ms"]) == 1 and p["judged_ms"][0] <= bound * (1 + SECOND_LOOK)]
        todo = [p for p in rows if p["measured_latency_ms"] is None and p["objective"] > floor
                and p["predicted_latency_ms"] * ratio <= bound]
        batch = (again + todo)[: MAX_WINNER_TRIES - 1 if round_ == 0 else ROUND_TRIES]
        if round_ == 0 and rows[-1]["measured_latency_ms"] is None and rows[-1] not in batch:
            batch.append(rows[-1])  # the fastest point: something likely to meet the target
        if not batch:
            break
        for point, figures in zip(batch, measure([p["number"] for p in batch])):
            _record(point, figures, target_ms, bound, round_ + 1)
        measured += [p for p in batch if p not in measured]
        ratio = _ratio(measured)
    met = [p for p in measured if p["within_guard"]]
    winner = max(met, key=lambda p: (p["objective"], -p["measured_latency_ms"])) if met else None
    return winner, measured


def _record(point: dict[str, Any], figures: tuple[float, ...], target_ms: float, bound: float, round_: int) -> None:
    """Keep one measurement of `point`, (median, spread) or (median, spread, as timed), judged by the higher
    of its median and its figure as timed; a point measured a second time (SECOND_LOOK) is judged by the
    mean of both judgements, its median and spread the mean of both."""
    median, spread, *as_timed = figures
    judged = [*point.get("judged_ms", []), max([median, *as_timed])]
    if point["measured_latency_ms"] is not None:
        median, spread = (median + point["measured_latency_ms"]) / 2, (spread + point["measured_spread_ms"]) / 2
    mean = float(np.mean(judged))
    point.update(measured_latency_ms=median, measured_spread_ms=spread, judged_ms=judged,
                 meets_target=mean <= target_ms, within_guard=mean <= bound, round=round_)


def verify_winner(space: SearchSpace, front: pd.DataFrame, arch_of: Callable[[int], Mapping[str, Any]],
                  target_ms: float, latency: LatencyModel | None, *, measure: bool = True,
                  candidates: pd.DataFrame | None = None) -> WinnerCheck:
    """Choose the winner, measuring candidates on this machine where that means anything (a table
    imported from another device is not this machine); `arch_of(number)` gives a trial's architecture.
    Measured, the winner may come from `candidates` (every completed trial's front, feasible or not:
    `results.candidate_frame`; default `front`); unmeasured, it is the best point of the feasible `front`.
    Measured means at the machine's speed during the check, as a plain timing reads now (each point also
    keeps its figure at the table's level, as timed, and that speed)."""
    can_measure = measure and latency is not None and not latency.profile.remote
    if can_measure and candidates is not None:
        front = candidates
    extra_by_number: dict[int, dict[str, float]] = {}  # each point's figure at the level, as timed, the speed
    readings: list[float] = []  # the network probe's readings during the check

    def measure_points(numbers: list[int]) -> list[tuple[float, float, float]]:
        # Each point alone, warm back-to-back calls between two network probe readings, three
        # reshuffled passes, median; put at the table's level by the probe and then at the machine's
        # median speed during this round: what a plain timing reads now, less the group-to-group
        # wobble of a busy machine. Not at the speed the search predicted at: a host that sped up 2x
        # during a run (make run, 25 ms) kept the winner at 13.5 ms as timed, and the user's timing
        # read 12.5 ms, half the budget unused; the later rounds' measured / predicted rescaling
        # follows a change of speed like any other bias of the predictions. The figure as timed is
        # judged too: once the median at the round's speed read 23.34 ms, as timed 25.15 ms, and the
        # user's timing 25.7 ms, over a 25 ms target (the probe and the network disagree on a busy host).
        first = len(latency.network_probe_readings)
        level = latency.measure_networks(space, [arch_of(n) for n in numbers], passes=WINNER_PASSES)
        readings.extend(latency.network_probe_readings[first:])
        now, figures = latency.last_speed, []
        for n, ms, cv, raw in zip(numbers, level, latency.last_pass_spread, latency.last_raw):
            figures.append((ms * now, cv * ms * now, raw))
            extra = {"measured_level_ms": ms, "measured_raw_ms": raw, "machine_speed": now}
            if n in extra_by_number:  # measured a second time (SECOND_LOOK): the mean of both, as choose_winner
                extra = {k: (v + extra_by_number[n][k]) / 2 for k, v in extra.items()}
            extra_by_number[n] = extra
        return figures

    winner, attempts = choose_winner(front, target_ms, measure_points if can_measure else None)
    for point in attempts:
        point.update(extra_by_number[point["number"]])
    check = WinnerCheck(winner, attempts, machine_speed=latency.last_speed if attempts else None,
                        measured_over_predicted=_ratio(attempts) if attempts else None)
    if readings:
        level = latency.table.network_reference.ms
        check.machine_speed_range = (min(readings) / level, max(readings) / level)
    why = None if can_measure else ("the latency table was imported from another device"
                                    if latency is not None and measure else "measuring was turned off")
    _explain(check, target_ms, why)
    if check.winner is not None and check.winner.get("machine_speed") is not None:
        # The speed the winner was measured at, not the last round's: a later round may time one other point.
        check.machine_speed = check.winner["machine_speed"]
    _caution(check, target_ms)
    return check


def _caution(check: WinnerCheck, target_ms: float) -> None:
    """The winner's plain-timing range at the speeds the machine ran during the check, and a caution when
    its slow end is over the target. Once the check read 22.9 ms for a 25 ms target while the network
    probe ranged 0.34-0.68x the level, and torch.utils.benchmark read the exported winner at 38.6 ms a
    minute later: a host whose speed moves 2x within a minute cannot verify a winner, and says so."""
    winner, speeds = check.winner, check.machine_speed_range
    if winner is None or speeds is None or winner.get("measured_level_ms") is None:
        return
    low, high = (winner["measured_level_ms"] * speed for speed in speeds)
    check.plain_timing_range_ms = (low, high)
    if high > target_ms:
        check.caution = (f"a plain timing of the winner reads up to {high:.1f} ms at the slowest the machine ran "
                         f"during the check (its speed moved {speeds[1] / speeds[0]:.2f}x), over the {target_ms:g} ms "
                         f"target: run `nas report` on the run folder to check again when the machine is calmer")


def _measured(point: Mapping[str, Any]) -> str:
    """A point's measurement in words: the median the check judged by, and its plain timing if that is over it."""
    raw = point.get("measured_raw_ms")
    as_timed = f" ({raw:.2f} ms as timed)" if raw is not None and raw > point["measured_latency_ms"] else ""
    return f"{point['measured_latency_ms']:.2f} ms{as_timed}"


def _explain(check: WinnerCheck, target_ms: float, unmeasured_why: str | None) -> None:
    """Set the check's note (and, when every measured point missed, its winner): why the winner is not
    simply the best prediction, or why it was not measured (`unmeasured_why`)."""
    winner, attempts = check.winner, check.attempts
    if winner is None and attempts:
        # Every measured point missed the target: report the fastest measured one, and say so.
        check.winner = min(attempts, key=lambda a: a["measured_latency_ms"])
        check.note = (f"none of the {len(attempts)} Pareto points measured met {target_ms:g} ms with "
                      f"{WINNER_GUARD:.0%} to spare when measured end to end; best shows the fastest measured")
    elif attempts and attempts[0]["number"] != winner["number"]:
        first = attempts[0]
        how = (f"{len(attempts)} measured in {attempts[-1]['round']} round(s); measured / predicted "
               f"{check.measured_over_predicted:.2f}")
        if not first["within_guard"]:
            check.note = (f"trial {first['number']} was predicted at {first['predicted_latency_ms']:.2f} ms "
                          f"but measured {_measured(first)}; took the best point measured "
                          f"within the target with {WINNER_GUARD:.0%} to spare (trial {winner['number']}), of {how}")
        elif winner["objective"] > first["objective"]:
            check.note = (f"trial {winner['number']}, predicted at {winner['predicted_latency_ms']:.2f} ms, "
                          f"measured {winner['measured_latency_ms']:.2f} ms and beats trial {first['number']}, "
                          f"the best predicted within the target; of {how}")
    elif winner is not None and unmeasured_why is not None:
        check.note = f"the winner was not measured end to end ({unmeasured_why})"
