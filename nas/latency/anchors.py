"""Anchors: units already in the table, timed in the rotation of each new group of units.

Why: a group must land at the table's level however fast the machine runs while it is timed. The
block probe, timed alone before and after a group, does not follow the units under load: with
another process busy on this 2-core machine, 16 sandglass units ran 2.1-2.9x slower (median of each
load) while the probe read 1.1-2.5x, so a unit rescaled by it was off by 57% (median; 175% at the
90th percentile), and a search on an overloaded host filled entries 20-60x too small. Rescaled by the
median of 4 anchors timed in the same rotation, 19% (80%); and the anchors read 1.8-3.1x under every
load against 0.9-1.2x calm, so a load is seen and waited out (`nas.latency.timing`).
`benchmarks/anchor_tracking.py` measures this, `benchmarks/loaded_fill.py` the lazy fill it fixes;
figures in docs/latency_measurements.md.
"""
from __future__ import annotations

import random
from typing import Iterable

import numpy as np

from nas.space import SearchSpace, Unit, plan, sample
from proxies.latency import LatencyTable

#: Anchors timed beside each group of new units, and the fewest that replace the probe.
ANCHORS = 4
MIN_ANCHORS = 3
#: Within this of the level (the anchors' own noise, ~2-3% for the median of 4 on a calm machine)
#: a group is kept as timed: rescaling would only add that noise.
ANCHOR_BAND = 0.05
#: Seeded architectures of a space whose units in the table start the pool of a new session.
SEED_ARCHS = 8


class AnchorPool:
    """The units with entries that this session can build and time as anchors; `draw` picks a group's."""

    def __init__(self, table: LatencyTable, seed: int = 0) -> None:
        self.table = table
        self._units: dict[str, Unit] = {}
        self._seeded: set[str] = set()
        self._rng = random.Random(seed)

    def add(self, units: Iterable[Unit]) -> None:
        """Units just recorded in the table (each group's, so later groups can anchor on them)."""
        for unit in units:
            self._units.setdefault(unit.text, unit)

    def _seed(self, space: SearchSpace) -> None:
        # A table from earlier sessions: this session knows its entries' texts, not their units, so a
        # few seeded architectures of the space offer the units of theirs the table has.
        if space.name in self._seeded:
            return
        self._seeded.add(space.name)
        self.add(u for i in range(SEED_ARCHS) for u in plan(space, sample(space, i)).units if u.text in self.table)

    def draw(self, space: SearchSpace, exclude: Iterable[str] = ()) -> list[Unit]:
        """Up to ANCHORS units with entries, none of `exclude` (the group's own), drawn at random."""
        self._seed(space)
        skip = set(exclude)
        candidates = [u for text, u in self._units.items() if text not in skip and text in self.table]
        return self._rng.sample(candidates, min(ANCHORS, len(candidates)))


def anchor_ratio(anchor_ms: Iterable[float], entries_ms: Iterable[float]) -> float:
    """How much slower than the table's level the group ran: the median of each anchor's time now
    over its entry (> 1: slower now)."""
    return float(np.median([now / entry for now, entry in zip(anchor_ms, entries_ms)]))
