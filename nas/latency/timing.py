"""Timing units and networks at a table's speed level: the probe, groups in rotation, re-timing.

`TableTimer` is the measuring half of `LatencyModel`: it times modules built
from unit keys or architectures beside a probe, so figures taken at different
moments of a drifting machine land at one level, and records unit entries in
the table. Prediction (sums, correction, interval) lives in `nas.latency.model`.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from nas.builder import build, build_unit
from nas.errors import NasError
from nas.latency.anchors import ANCHOR_BAND, MIN_ANCHORS, AnchorPool, anchor_ratio
from nas.space import SearchSpace, Unit, plan
from proxies.latency import DeviceProfile, Entry, LatencyTable, Measurement, measure_modules
from proxies.latency.reference import NETWORK_PROBE_BAND, PROBE_BAND, Probe, deployed_ratio, level_factor

# What "latency" means everywhere (table entries, fit, validation, `arch stats --measure`, the
# winner check): the median of warm, back-to-back calls of the module run alone, as
# torch.utils.benchmark reports it, at the table's speed level (the probes' times when the table's
# first group was timed, both probes read together). Units are timed in rotation, a group at a time, to share this machine's
# second-to-second drift; each visit makes one untimed call (the other members evicted this one's
# weights) and then a burst of timed calls. Networks are timed alone (NETWORK_GROUP).
# A group of units is put at the level by its anchors (`nas.latency.anchors`): units already in the
# table, timed as members of the same rotation; the first groups of a new table, with none yet, by
# the block probe timed right before and after. Networks are put at the level by the network probe,
# timed around each. A group of units whose anchors read slower than the session's usual speed is
# timed again after a pause (a load passing): the fastest try is kept, and counted if still slow
# (`disturbed_groups`); a group beside the probe, when its readings before and after differ. The two
# levels name one moment of the machine: set apart (units first, networks minutes later), every
# correction carried the machine's change between the two moments as a scale.
# Groups of units are drawn in a seeded shuffle, so the units of one network come from many groups.
UNIT_MEASURE = {"warmup": 1, "min_runs": 3, "burst": 4, "max_rounds": 2, "target_rel_spread": 0.10}
NETWORK_MEASURE = {"warmup": 2, "min_runs": 4, "burst": 5, "max_rounds": 2, "target_rel_spread": 0.05}
# A group whose probe readings before and after differ by more than STATE_TOLERANCE, or whose
# anchors read more than BUSY_TOLERANCE slower than the session's usual speed, was timed while the
# machine changed speed: it is timed again, up to GROUP_TRIES times in all, after RETRY_PAUSE_S x the
# tries so far. BUSY_TOLERANCE lies between a calm machine's drift and a load: anchors read
# 0.94-1.18x calm and 1.79-3.12x under load in benchmarks/anchor_tracking.py (0.72-1.14x and
# 1.72-3.22x in an earlier run of the same experiment).
STATE_TOLERANCE = 0.10
BUSY_TOLERANCE = 0.30
GROUP_TRIES = 3
RETRY_PAUSE_S = 1.0
UNIT_GROUP = 32  # units timed together (a few seconds); a killed build loses at most this group
# Networks are timed alone, between two probe readings: in rotation with 7 others they read 4%
# above torch.utils.benchmark on the same network at the same machine speed (their weights compete
# in L3), alone our harness and the referee agree within 1% (50 networks, benchmarks/latency_truth.py).
NETWORK_GROUP = 1
SHUFFLE_SEED = 0
# Alternating (block, network) probe readings whose medians set a new table's two levels together.
LEVEL_READINGS = 3


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter), pulled lazily from `items`."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def batches_done(items: Sequence, size: int, progress: Callable[[Iterable], Iterable] | None = None) -> Iterator[list]:
    """`batches`, with `progress` (a loop wrapper such as a bar) advanced as each batch is done, not as it
    is drawn: a group of units takes seconds, and a bar drawn ahead showed 13/13 before any was timed."""
    ticks = iter(progress(items)) if progress else iter(())
    for batch in batches(items, size):
        yield batch
        for _ in batch:
            next(ticks, None)
    next(ticks, None)  # past the end: the wrapper finishes (a bar closes)


def shuffled(items: Sequence, seed: int) -> list:
    """`items` in a seeded random order (the same seed, the same order)."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


class MissingEntryError(NasError):
    """A unit has no entry and measuring is disabled."""


class TableTimer:
    """Times units and networks for one table at its speed level; records units in it.

    Kept for the caller after each call: the raw medians as timed (`last_raw`), the probe's spread
    (`last_drift_cv`), the machine's speed against the level (`last_speed`) and each network's
    spread between passes (`last_pass_spread`); every probe reading of the session
    (`probe_readings`, `network_probe_readings`), every group's anchor ratio (`anchor_ratios`), how many
    groups were timed again (`retimed_groups`) and how many were kept off the usual speed after
    every try (`disturbed_groups`).
    """

    def __init__(self, table: LatencyTable, *, measure_options: Mapping[str, Any] | None = None,
                 network_options: Mapping[str, Any] | None = None) -> None:
        self.table = table
        # Units are many and small: fewer, shorter rounds keep a table of thousands in minutes.
        self.measure_options = dict(UNIT_MEASURE if measure_options is None else measure_options)
        self.network_options = dict(network_options or {})
        self.last_pass_spread: list[float] = []
        self.last_raw: list[float] = []
        self.last_drift_cv: float | None = None  # the probe's spread across the last call's groups
        self.last_speed: float | None = None  # median probe reading / table level over the last call's groups
        self.probe_readings: list[float] = []  # every block probe reading of this session (ms)
        self.network_probe_readings: list[float] = []  # every network probe reading of this session (ms)
        self.anchor_ratios: list[float] = []  # each anchored group's speed against the level (> 1: slower)
        self.retimed_groups = 0  # groups timed again because the machine changed speed during them
        self.disturbed_groups = 0  # groups of units kept, after every try, off the session's usual speed
        self.disturbed_units: dict[str, Unit] = {}  # their units, until `retime_disturbed` times them again
        self.anchors = AnchorPool(table)
        self.group_tries = GROUP_TRIES  # benchmarks/network_repeatability.py compares other values
        self._probe: Probe | None = None
        self._network_probe: Probe | None = None
        self._deployed_ratio: float | None = None

    @property
    def profile(self) -> DeviceProfile:
        """The table's device profile."""
        return self.table.profile

    def deployed_ratio(self) -> float:
        """The probe as deployed over the probe as a table unit is timed (1 but for ONNX Runtime); read
        once per session (`proxies.latency.reference.deployed_ratio`)."""
        if self._deployed_ratio is None:
            self._deployed_ratio = deployed_ratio(self.profile)
        return self._deployed_ratio

    def probe_ms(self) -> float:
        """One reading of the machine's speed for units: the block probe's median of warm back-to-back calls."""
        if self._probe is None:
            self._probe = Probe(self.profile)
        return self._probe.time_ms()

    def network_probe_ms(self) -> float:
        """One reading of the machine's speed for networks: the network probe timed alone, as deployed."""
        if self._network_probe is None:
            self._network_probe = Probe(self.profile, network=True)
        return self._network_probe.time_ms()

    def _level(self, network: bool) -> Entry | None:
        return self.table.network_reference if network else self.table.reference

    def ensure_levels(self) -> None:
        """Set whichever of the table's two levels (block probe, network probe) is missing, from
        LEVEL_READINGS alternating readings of both probes taken now, so both levels name one state
        of the machine. A table that has one level already (written before the two were set together)
        gets the other expressed at that one's state: the reading now, times the factor the present
        probe reading gives against the existing level (1 within the probe's noise)."""
        block, network = self.table.reference, self.table.network_reference
        if block is not None and network is not None:
            return
        pairs = np.array([(self.probe_ms(), self.network_probe_ms()) for _ in range(LEVEL_READINGS)])
        now_block, now_network = np.median(pairs, axis=0)
        spread_block, spread_network = np.ptp(pairs, axis=0)
        if block is not None:
            factor = level_factor(block.ms, float(now_block), PROBE_BAND)
        elif network is not None:
            factor = level_factor(network.ms, float(now_network), NETWORK_PROBE_BAND)
        else:
            factor = 1.0
        if block is None:
            self.table.set_reference(Entry(ms=float(now_block * factor), spread_ms=float(spread_block * factor),
                                           runs=LEVEL_READINGS, rounds=1))
        if network is None:
            self.table.set_network_reference(Entry(ms=float(now_network * factor),
                                                   spread_ms=float(spread_network * factor),
                                                   runs=LEVEL_READINGS, rounds=1))

    def _timed_with_probe(self, items: list, options: Mapping[str, Any],
                          network: bool = False) -> tuple[list[Measurement], float]:
        """Time (module, shape) items in one rotation between two probe readings; their figures and the
        factor that puts them at the table's level. A group during which the machine changed speed is
        timed again; a table without levels gets both first (`ensure_levels`). `network`: networks,
        timed alone with the backend's default threading as the user will run them, beside the network
        probe."""
        self.ensure_levels()
        probe, readings = (self.network_probe_ms, self.network_probe_readings) if network else \
            (self.probe_ms, self.probe_readings)
        for attempt in range(self.group_tries):
            if attempt:
                time.sleep(RETRY_PAUSE_S * attempt)
            before = probe()
            figures = measure_modules(items, self.profile, copy=False, as_deployed=network, **options)
            after = probe()
            if abs(after / before - 1) <= STATE_TOLERANCE:
                break
            self.retimed_groups += attempt < self.group_tries - 1
        reading = (before * after) ** 0.5
        readings.append(reading)
        return figures, level_factor(self._level(network).ms, reading, NETWORK_PROBE_BAND if network else PROBE_BAND)

    def current_speed(self, readings: int = 5) -> float:
        """How fast the machine runs networks in this session against the table's network level (> 1:
        slower), from the network probe: the median of this many fresh readings and every earlier one
        of this session, taken as 1 within the probe's noise (NETWORK_PROBE_BAND). A spot reading
        alone misled: 8 block-probe readings said 1.11x at a search's start and the machine ran 0.94x
        during its winner check minutes later. A table without levels gets them first (`ensure_levels`)."""
        self.ensure_levels()
        fresh = [self.network_probe_ms() for _ in range(readings)]
        self.network_probe_readings.extend(fresh)
        now = float(np.median(self.network_probe_readings))
        return 1 / level_factor(self.table.network_reference.ms, now, NETWORK_PROBE_BAND)

    def _timed_with_anchors(self, items: list, anchor_entries_ms: Sequence[float]
                            ) -> tuple[list[Measurement], float, bool]:
        """Time (module, shape) items whose last ones are anchors (with these entries) in one rotation;
        the others' figures, the factor that puts them at the table's level, and whether the group
        stayed slowed. A group whose anchors read more than BUSY_TOLERANCE slower than the session's
        usual speed (the median of its groups so far; the level at first) was timed beside a passing
        load: it is timed again after a pause, and of GROUP_TRIES the fastest try is kept and rescaled.
        Faster than usual is a calmer moment, kept. A group kept that much slower than the usual speed
        or the level, whichever is faster, stayed slowed (a load that lasts becomes the usual speed, but
        its entries are still ~20% off: they are timed again by `retime_disturbed`)."""
        usual = float(np.median(self.anchor_ratios)) if self.anchor_ratios else 1.0
        kept: tuple[float, list[Measurement]] | None = None
        for attempt in range(self.group_tries):
            if attempt:
                time.sleep(RETRY_PAUSE_S * attempt)
            figures = measure_modules(items, self.profile, copy=False, **self.measure_options)
            split = len(figures) - len(anchor_entries_ms)
            ratio = anchor_ratio([m.median_ms for m in figures[split:]], anchor_entries_ms)
            if kept is None or ratio < kept[0]:
                kept = (ratio, figures[:split])
            if ratio <= usual * (1 + BUSY_TOLERANCE):
                break
            self.retimed_groups += attempt < self.group_tries - 1
        ratio, figures = kept
        self.anchor_ratios.append(ratio)
        return figures, level_factor(1.0, ratio, ANCHOR_BAND), ratio > min(usual, 1.0) * (1 + BUSY_TOLERANCE)

    def measure_units(self, space: SearchSpace, units: Sequence[Unit], anchored: bool = True) -> list[Entry]:
        """Time `units` together in rotation beside anchors (or, with too few in the table, the block
        probe), at the table's level, and record them. `anchored=False`: beside the probe only, for
        re-timing units whose table is in doubt (its entries would carry their own error back)."""
        if self.profile.remote:
            raise MissingEntryError(
                f"{self.table.path or 'the table'}: no latency for unit '{units[0].text}', and this table was "
                f"imported from {self.profile.device} ({self.profile.backend}): time the missing units there "
                f"(`nas lut export-ops`) and import them again")
        anchors = self.anchors.draw(space, exclude=[u.text for u in units]) if anchored else []
        if len(anchors) < MIN_ANCHORS:
            anchors = []
        modules = [(build_unit(u.key, space.norm), u.key.input_shape) for u in [*units, *anchors]]
        if anchors:
            entries_ms = [self.table.entries[a.text].ms for a in anchors]
            figures, factor, slowed = self._timed_with_anchors(modules, entries_ms)
            if slowed:
                self.disturbed_groups += 1
                self.disturbed_units.update((u.text, u) for u in units)
        else:
            figures, factor = self._timed_with_probe(modules, self.measure_options)
        entries = [Entry(ms=m.median_ms * factor, spread_ms=m.spread_ms * factor, runs=m.runs, rounds=m.rounds)
                   for m in figures]
        for unit, entry in zip(units, entries):
            self.table.add(unit.text, entry)
        self.anchors.add(u for u in units if u.text not in self.disturbed_units)  # a slowed group anchors no other
        return entries

    def retime_disturbed(self, space: SearchSpace) -> tuple[int, int]:
        """Time again the units whose groups stayed slower than usual after every try (their entries were
        rescaled by anchors, about 20% off under load, benchmarks/anchor_tracking.py): once the load
        has passed they are right. Returns how many were timed and how many stayed slow again."""
        units = list(self.disturbed_units.values())
        self.disturbed_units = {}
        for batch in batches(units, UNIT_GROUP):
            self.measure_units(space, batch)
        return len(units), len(self.disturbed_units)

    def settle_disturbed(self, space: SearchSpace, retime: bool = True) -> dict[str, Any]:
        """What a busy machine did to this session's units, for a report (`busy_unit_groups`): the groups
        kept slowed, their units, the tolerance, and, when `retime`, how many stayed slow when timed again
        (`retime_disturbed`); without it they all count as still slow."""
        groups, units = self.disturbed_groups, len(self.disturbed_units)
        still = self.retime_disturbed(space)[1] if retime and units else units
        return {"groups": groups, "units": units, "tolerance": BUSY_TOLERANCE, "retimed": retime,
                "still_slow": still}

    def measure_unit(self, unit: Unit, space: SearchSpace) -> Entry:
        """Measure one unit and record it."""
        return self.measure_units(space, [unit])[0]

    def network(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> tuple[Any, tuple[int, ...]]:
        """The built network of `arch` and its input shape, ready to be timed."""
        return build(space, arch), plan(space, arch or {}).input_shape

    def measure_networks(self, space: SearchSpace, archs: Sequence[Mapping[str, Any]], passes: int = 3,
                         progress: Callable[[Iterable], Iterable] | None = None) -> list[float]:
        """End-to-end medians of several networks at the table's speed level, over `passes` sweeps.

        Each network is timed in a group of NETWORK_GROUP (alone) between two network probe readings; each
        sweep reshuffles the order, so a network's figure is the median of timings taken minutes
        apart. A group timed while the machine ran beyond the probe's noise from the table's level
        is rescaled to it (`_timed_with_probe`). Kept for the caller: the raw medians as timed
        (`last_raw`), the probe's spread across groups (`last_drift_cv`), the machine's speed
        against the level (`last_speed`, > 1: slower now) and each network's spread between passes
        (`last_pass_spread`).
        """
        raw: list[list[float]] = [[] for _ in archs]
        factors: list[list[float]] = [[] for _ in archs]
        speeds = []  # each group's network probe reading over the network level
        order = [(p, i) for p in range(max(1, passes)) for i in shuffled(range(len(archs)), SHUFFLE_SEED + p)]
        options = {**NETWORK_MEASURE, **self.network_options}
        for batch in batches(progress(order) if progress else order, NETWORK_GROUP):
            groups: dict[int, list[int]] = {}
            for p, i in batch:  # a batch may straddle two sweeps: a network never meets itself
                groups.setdefault(p, []).append(i)
            for members in groups.values():
                figures, factor = self._timed_with_probe([self.network(space, archs[i]) for i in members], options,
                                                         network=True)
                speeds.append(self.network_probe_readings[-1] / self.table.network_reference.ms)
                for i, m in zip(members, figures):
                    raw[i].append(m.median_ms)
                    factors[i].append(factor)
        self.last_raw = [float(np.median(r)) for r in raw]
        self.last_drift_cv = float(np.std(speeds) / np.mean(speeds))
        self.last_speed = float(np.median(speeds))
        runs = [[m * f for m, f in zip(ms, fs)] for ms, fs in zip(raw, factors)]
        self.last_pass_spread = [float(np.std(r) / np.mean(r)) for r in runs]
        return [float(np.median(r)) for r in runs]
