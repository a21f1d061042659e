"""The winner check: the best Pareto point that meets the target when measured end to end.

Predictions come from a table; the winner is the one architecture a user will
time, so the report measures a few front points (each alone, warm
back-to-back calls, reshuffled passes, median) and takes the best-objective
one that meets the target, saying so when the prediction alone was wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pandas as pd

from nas.latency import LatencyModel
from nas.space import SearchSpace

MAX_WINNER_TRIES = 6  # Pareto points the winner check measures together
WINNER_PASSES = 3

# Measures trial numbers together: (median, spread) in ms for each, in order.
Measure = Callable[[list[int]], list[tuple[float, float]]]


@dataclass
class WinnerCheck:
    """What the check found: the winner (None when the front is empty), every point measured, why the
    winner is not simply the best prediction, and the machine's speed during the check."""

    winner: dict[str, Any] | None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    machine_speed: float | None = None  # > 1: the machine ran slower during the check than at the table's level


def choose_winner(front: pd.DataFrame, target_ms: float, measure: Measure | None
                  ) -> tuple[dict[str, Any] | None, list[dict]]:
    """The best-objective front point whose end-to-end measurement meets the target.

    The best MAX_WINNER_TRIES - 1 points by objective and the front's fastest point (the likeliest
    to meet the target) are measured in one call, in reshuffled passes, so that a slow minute of the
    machine is shared by all of them instead of failing one: `measure(numbers)` returns (median,
    spread) in ms for each.
    Without a measure function the best point wins on its prediction alone.
    """
    rows = list(front.iloc[::-1].itertuples(index=False))  # best objective first, the fastest point last
    if not rows:
        return None, []
    chosen = rows[: MAX_WINNER_TRIES - 1] + ([rows[-1]] if len(rows) >= MAX_WINNER_TRIES else [])
    points = [{"number": int(row.number), "arch": row.arch, "macs": int(row.macs), "params": int(row.params),
               "objective": float(row.objective), "predicted_latency_ms": float(row.predicted_latency_ms),
               "measured_latency_ms": None} for row in chosen]
    if measure is None:
        return points[0], []
    for point, (median, spread) in zip(points, measure([p["number"] for p in points])):
        point.update(measured_latency_ms=median, measured_spread_ms=spread, meets_target=median <= target_ms)
    winner = next((p for p in points if p["meets_target"]), None)
    return winner, points


def verify_winner(space: SearchSpace, front: pd.DataFrame, arch_of: Callable[[int], Mapping[str, Any]],
                  target_ms: float, latency: LatencyModel | None, *, measure: bool = True) -> WinnerCheck:
    """Choose the winner of `front`, measuring its candidates on this machine where that means anything
    (a table imported from another device is not this machine); `arch_of(number)` gives a trial's
    architecture."""
    can_measure = measure and latency is not None and not latency.profile.remote
    level_by_number: dict[int, float] = {}

    def measure_points(numbers: list[int]) -> list[tuple[float, float]]:
        # Each point alone, warm back-to-back calls between two probe readings, three reshuffled
        # passes, median: the figure a plain timing of best_model.py shows now, which is what the
        # search's predictions (table level x the machine's speed at its start) stand for. The
        # figures at the table's level are kept beside them.
        level = latency.measure_networks(space, [arch_of(n) for n in numbers], passes=WINNER_PASSES)
        level_by_number.update(zip(numbers, level))
        return [(raw, cv * raw) for raw, cv in zip(latency.last_raw, latency.last_pass_spread)]

    winner, attempts = choose_winner(front, target_ms, measure_points if can_measure else None)
    for point in attempts:
        point["measured_level_ms"] = level_by_number[point["number"]]
    check = WinnerCheck(winner, attempts, machine_speed=latency.last_speed if attempts else None)
    if winner is None and attempts:
        # Every measured point missed the target: report the fastest measured one, and say so.
        check.winner = min(attempts, key=lambda a: a["measured_latency_ms"])
        check.note = (f"none of the {len(attempts)} Pareto points measured met {target_ms:g} ms when measured "
                      f"end to end; best shows the fastest measured")
    elif attempts and attempts[0]["number"] != winner["number"]:
        first = attempts[0]
        check.note = (f"trial {first['number']} was predicted at {first['predicted_latency_ms']:.2f} ms "
                      f"but measured {first['measured_latency_ms']:.2f} ms; took the best Pareto point "
                      f"that meets the target when measured (trial {winner['number']}), of "
                      f"{len(attempts)} measured together")
    elif winner is not None and not can_measure:
        check.note = "the winner was not measured end to end (" + (
            "the latency table was imported from another device)" if latency is not None and measure
            else "measuring was turned off)")
    return check
