"""The fastest architecture the table can find, to refuse a target nothing in the space can meet."""
from __future__ import annotations

from typing import Any, Callable

from nas.space import SearchSpace, decisions


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
