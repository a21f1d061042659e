"""Cost of an architecture as a sum of per-unit entries, each counted once with fvcore and cached.

Units are independent given their key (static config + input shape), so a
candidate's params, MACs and FLOPs are sums of cached entries: scoring a new
candidate plans it (pure Python) and adds numbers; it never traces a network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nas.builder import build, build_unit
from nas.ops.layers import deferred_init
from nas.space import SearchSpace, Unit, plan
from proxies.flops import Counts, count_module


@dataclass(frozen=True)
class UnitCost:
    unit: Unit
    counts: Counts


@dataclass(frozen=True)
class Cost:
    """Totals for one architecture, with the per-unit breakdown."""

    resolution: int
    params: int
    macs: int
    flops: int
    units: tuple[UnitCost, ...]

    def by_operator(self) -> dict[str, int]:
        return sum((u.counts for u in self.units), Counts.zero()).by_operator


class CostModel:
    """Per-unit cost cache shared by every architecture of every space (keys are self-contained)."""

    def __init__(self) -> None:
        self._cache: dict[str, Counts] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def unit_counts(self, unit: Unit, space: SearchSpace) -> Counts:
        text = unit.text
        counts = self._cache.get(text)
        if counts is None:
            with deferred_init():  # tracing counts shapes, not values: skip weight init
                module = build_unit(unit.key, space.norm)
            counts = count_module(module, (1, *unit.key.input_shape))
            self._cache[text] = counts
        return counts

    def cost(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> Cost:
        """Params, MACs and FLOPs of `arch` (batch 1), with the per-unit breakdown."""
        net = plan(space, arch or {})
        units = tuple(UnitCost(u, self.unit_counts(u, space)) for u in net.units)
        return Cost(
            resolution=net.resolution,
            params=sum(u.counts.params for u in units),
            macs=sum(u.counts.macs for u in units),
            flops=sum(u.counts.flops for u in units),
            units=units,
        )

    def macs_params(self, space: SearchSpace, arch: Mapping[str, Any]) -> tuple[int, int]:
        """The search's fast path: (MACs, params) from cached entries, misses counted once."""
        macs = params = 0
        for unit in plan(space, arch).units:
            counts = self.unit_counts(unit, space)
            macs += counts.macs
            params += counts.params
        return macs, params


def whole_model_counts(space: SearchSpace, arch: Mapping[str, Any] | None = None) -> Counts:
    """fvcore on the whole built network: the slow reference the cached sum must equal."""
    with deferred_init():
        model = build(space, arch, init=False)
    return count_module(model, (1, space.in_channels, *(2 * [plan(space, arch or {}).resolution])))
