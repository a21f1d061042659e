"""The fastest architecture the table can find, to refuse a target nothing in the space can meet."""
from __future__ import annotations

import math
from typing import Any, Callable

from nas.search.target import TargetError, format_latency
from nas.space import SearchSpace, decisions, encode


class TargetUnreachableError(TargetError):
    """No architecture the table could find meets the target."""


def _cheap_first(choice: Any) -> tuple:
    # Small numbers, SE off: the cheap end of every ordered choice list; names keep their YAML order.
    if isinstance(choice, bool):
        return (0, int(choice))
    if isinstance(choice, (int, float)):
        return (0, choice)
    return (1, 0)


def smallest_arch(space: SearchSpace) -> dict[str, Any]:
    """Each decision at its cheapest-looking choice: the least resolution, depth, width, kernel, expansion."""
    return {d.name: min(d.choices, key=_cheap_first) for d in decisions(space)}


def fastest_arch(space: SearchSpace, latency_ms: Callable[[dict[str, Any]], float], target_ms: float,
                 sweeps: int = 3) -> tuple[dict[str, Any], float]:
    """An architecture at or below `target_ms`, or the fastest found when none is.

    Starts from `smallest_arch` and, while it misses the target, changes one
    decision at a time to whichever choice predicts fastest (coordinate
    descent, bounded by `sweeps`). A heuristic: the true minimum may be lower,
    which is why the error message says "the fastest found".
    """
    arch = smallest_arch(space)
    best = latency_ms(arch)
    for _ in range(sweeps):
        if best <= target_ms:
            break
        improved = False
        for d in decisions(space):
            for choice in d.choices:
                if choice == arch[d.name]:
                    continue
                trial = {**arch, d.name: choice}
                ms = latency_ms(trial)
                if ms < best:
                    arch, best, improved = trial, ms, True
        if not improved:
            break
    return arch, best


def require_reachable(space: SearchSpace, latency_ms: Callable[[dict[str, Any]], float], target_ms: float,
                      margin: float, profile_id: str) -> tuple[dict[str, Any], float]:
    """The architecture `fastest_arch` finds within `target_ms / (1 + margin)`, or TargetUnreachableError
    naming the fastest found, so that a search never starts on a target nothing in the space meets."""
    budget = target_ms / (1 + margin)
    arch, ms = fastest_arch(space, latency_ms, budget)
    if ms > budget:
        with_margin = f" with a {margin:.1%} latency margin" if margin else ""
        reachable = format_latency(_round_up(ms * (1 + margin)))
        hint = (f"; lower --latency-margin or raise the target to {reachable} or more" if margin else
                f"; raise the target to {reachable} or more")
        raise TargetUnreachableError(
            f"no architecture in {space.file} meets {format_latency(target_ms)} on {profile_id}{with_margin}: "
            f"the smallest predicted is {ms:.2f} ms ({encode(space, arch)}){hint}")
    return arch, ms


def _round_up(ms: float) -> float:
    """Up to two significant figures, for a target to suggest: 29.98 -> 30, 0.1785 -> 0.18."""
    step = 10.0 ** (math.floor(math.log10(ms)) - 1)
    return round(math.ceil(ms / step - 1e-9) * step, 12)
