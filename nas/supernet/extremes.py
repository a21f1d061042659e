"""The largest and the smallest subnet of a space, by MACs: the two ends of the sandwich rule.

"Largest" cannot be read off the choices: a sandglass block's `expand` is a reduction ratio (a larger
value is a narrower block), and which op is bigger depends on the other fields. So the two ends are
found by coordinate ascent (descent) on (MACs, params) from the all-max (all-min) start, where one
coordinate is a whole block (every combination of its op, kernel, expand, SE, ... tried together, so
that e.g. "sandglass with ratio 6" is reachable from "inverted residual with ratio 2" in one move),
a stage's depth or width, or the resolution. Counts come from `nas.cost.CostModel` (cached per unit).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

from nas.cost import CostModel
from nas.space import Arch, Decision, SearchSpace, canonical, decisions

MAX_PASSES = 20  # each pass can only improve; spaces seen so far settle in two or three


def _groups(space: SearchSpace) -> list[list[Decision]]:
    """The coordinates: one group per block (all its decisions), one per other decision."""
    groups: dict[str, list[Decision]] = {}
    for d in decisions(space):
        parts = d.name.split(".")
        key = ".".join(parts[:2]) if len(parts) == 3 else d.name
        groups.setdefault(key, []).append(d)
    return list(groups.values())


def _extreme_choice(choices: tuple[Any, ...], pick: Callable) -> Any:
    try:
        return pick(choices)
    except TypeError:  # mixed types: no order, any start will do
        return choices[-1 if pick is max else 0]


def _climb(space: SearchSpace, cost: CostModel, sign: int) -> Arch:
    """Coordinate ascent of sign x (MACs, params), from each decision's max (sign 1) or min (-1) choice."""
    pick = max if sign > 0 else min
    arch = {d.name: _extreme_choice(d.choices, pick) for d in decisions(space)}

    def score(a: dict[str, Any]) -> tuple[int, int]:
        macs, params = cost.macs_params(space, a)
        return sign * macs, sign * params

    best = score(arch)
    for _ in range(MAX_PASSES):
        moved = False
        for group in _groups(space):
            for values in itertools.product(*(d.choices for d in group)):
                trial = {**arch, **{d.name: v for d, v in zip(group, values)}}
                value = score(trial)
                if value > best:
                    arch, best, moved = trial, value, True
        if not moved:
            break
    return canonical(space, arch)


def extreme_archs(space: SearchSpace, cost: CostModel | None = None) -> tuple[Arch, Arch]:
    """(largest, smallest): the subnets of the most and of the fewest MACs (ties: params), canonical.
    With no `cost` model, the per-user count cache is used and updated."""
    model = cost if cost is not None else CostModel.persistent()
    try:
        return _climb(space, model, 1), _climb(space, model, -1)
    finally:
        if cost is None:
            model.save()
