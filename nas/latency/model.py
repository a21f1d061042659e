"""Predicted latency of architectures: a sum of per-unit table entries plus a fitted correction.

The table (`proxies.latency.LatencyTable`) holds one measured latency per
unit key for one device profile. A unit missing from the table is measured
on first use (unless measuring is off), so a new user's first search needs
no separate step. A plain sum misses per-call overhead and what the runtime
fuses between units, so a per-profile linear correction is fitted on
networks measured end to end, and reported with its error. How units and
networks are timed is `nas.latency.timing`; how the correction is chosen,
`nas.latency.fit`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from nas.errors import NasError
from nas.latency.fit import REPRODUCED, Z90, fit_archs, fitted_correction, margin, symptom
from nas.latency.timing import SHUFFLE_SEED, UNIT_GROUP, MissingEntryError, TableTimer, batches, batches_done, shuffled
from nas.space import SearchSpace, Unit, plan
from proxies.latency import Correction, Entry, LatencyTable


@dataclass(frozen=True)
class Prediction:
    """A predicted latency with its 90% interval.

    The interval combines the standard error of each entry's median (from its spread and runs)
    with the correction's residuals on networks it did not see (`Correction.residual_mean` and
    `residual_sd`); ``residual_n`` says how many networks those came from (0: entries only).
    """

    ms: float
    low_ms: float
    high_ms: float
    residual_n: int = 0


def _combine(entries: Sequence[Entry]) -> Entry:
    """One entry from several passes: the median of their medians, all runs counted."""
    return Entry(ms=float(np.median([e.ms for e in entries])),
                 spread_ms=float(np.median([e.spread_ms for e in entries])),
                 runs=sum(e.runs for e in entries), rounds=sum(e.rounds for e in entries))


class LatencyModel(TableTimer):
    """Predicts latency from a table; measures (and records) missing units unless told not to."""

    def __init__(self, table: LatencyTable, *, measure_missing: bool = True,
                 measure_options: Mapping[str, Any] | None = None,
                 network_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(table, measure_options=measure_options, network_options=network_options)
        self.measure_missing = measure_missing
        self.last_fit_note: str | None = None  # a correction symptom found by the last fit, said in one line

    def unit_ms(self, unit: Unit, space: SearchSpace) -> float:
        """One unit's entry (ms), measured first if the table lacks it."""
        entry = self.table.get(unit.text)
        if entry is None:
            self._measure_missing(space, [unit])
            entry = self.table.entries[unit.text]
        return entry.ms

    def missing(self, space: SearchSpace, units: Iterable[Unit]) -> list[Unit]:
        """The distinct units of `units` the table has no entry for, in order."""
        seen: set[str] = set()
        out = []
        for u in units:
            if u.text not in seen and u.text not in self.table:
                seen.add(u.text)
                out.append(u)
        return out

    def _measure_missing(self, space: SearchSpace, units: Sequence[Unit],
                         progress: Callable[[Iterable], Iterable] | None = None) -> None:
        """Measure the units the table lacks (all of one network's together), or say how to fill it."""
        todo = self.missing(space, units)
        if not todo:
            return
        if not self.measure_missing:
            where = self.table.path or "the table"
            raise MissingEntryError(f"{where}: no latency for unit '{todo[0].text}' "
                                    f"(space {space.name}); run `nas lut build --space {space.file}`")
        for batch in batches_done(todo, UNIT_GROUP, progress):
            self.measure_units(space, batch)

    def fill(self, space: SearchSpace, units: Sequence[Unit], progress: Callable[[Iterable], Iterable] | None = None,
             passes: int = 1) -> int:
        """Measure every unit of `units` the table lacks, journaled so a killed run loses one group at most.

        Units are timed in groups of UNIT_GROUP, in rotation, in a seeded shuffled order. With
        `passes` > 1 the new units are measured again in later sweeps (reshuffled) and each entry
        keeps the median of its passes.
        """
        todo = self.missing(space, units)
        if not todo:
            return 0
        medians: dict[str, list[Entry]] = {}
        with self.table.open_journal():
            for sweep in range(max(1, passes)):
                order = shuffled(todo, SHUFFLE_SEED + sweep)
                for batch in batches_done(order, UNIT_GROUP, progress):
                    for unit, entry in zip(batch, self.measure_units(space, batch)):
                        medians.setdefault(unit.text, []).append(entry)
                        if sweep:
                            self.table.add(unit.text, _combine(medians[unit.text]))
        return len(todo)

    def _entries_ms(self, space: SearchSpace, units: Sequence[Unit]) -> float:
        entries = self.table.entries
        try:
            return sum([entries[u.text].ms for u in units])
        except KeyError:  # first use of some unit: measure what is missing, then sum
            self._measure_missing(space, units)
            return sum([entries[u.text].ms for u in units])

    def sum_ms(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> float:
        """Plain sum of the units' table entries."""
        return self._entries_ms(space, plan(space, arch or {}).units)

    def predict_ms(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> float:
        """Sum of entries, corrected by the table's fitted correction when it has one."""
        return self._corrected_ms(space, plan(space, arch or {}).units)

    def _corrected_ms(self, space: SearchSpace, units: Sequence[Unit]) -> float:
        total = self._entries_ms(space, units)
        c = self.table.correction
        if c is None:
            return total
        return c.scale * total + c.per_unit_ms * len(units) + c.offset_ms

    def predict(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> Prediction:
        """The prediction with a 90% interval (see `Prediction`)."""
        units = plan(space, arch or {}).units
        ms = self._corrected_ms(space, units)
        entries = self.table.entries
        # Standard error of each entry's median: 1.253 sigma / sqrt(runs), sigma ~ IQR / 1.349.
        se = sum((0.929 * entries[u.text].spread_ms) ** 2 / entries[u.text].runs for u in units) ** 0.5
        c = self.table.correction
        scale = c.scale if c is not None else 1.0
        rel_sd = ((scale * se / ms) ** 2 + (c.residual_sd if c is not None else 0.0) ** 2) ** 0.5
        bias = c.residual_mean if c is not None else 0.0
        return Prediction(ms=ms, low_ms=ms * (1 + bias - Z90 * rel_sd), high_ms=ms * (1 + bias + Z90 * rel_sd),
                          residual_n=c.residual_n if c is not None else 0)

    def default_margin(self) -> float:
        """The search's default latency margin from the table's correction (see `fit.margin`)."""
        return margin(self.table.correction)

    def fit_correction(self, space: SearchSpace, n: int = 20, seed: int = 0, passes: int = 3,
                       progress: Callable[[Iterable], Iterable] | None = None,
                       unit_progress: Callable[[Iterable], Iterable] | None = None) -> Correction:
        """Fit a correction on `n` random networks (a seed stream validation never uses).

        Four nested models are tried: the plain sum, sum + offset, scale * sum + offset, and
        scale * sum + per_unit * units + offset. The one with the lowest leave-one-out error is
        kept, so on a noisy machine a few networks cannot talk the fit into nonsense. A result far
        from the plain sum (`symptom`) may mean some entries were timed unlike the networks: the fit
        networks' units are timed again, once, and the fit repeated; what remains is said in
        `last_fit_note`. Where the re-timed units reproduced the networks' sums (within REPRODUCED),
        the note says the gap is the machine's and the correction keeps it, instead of advising a
        rebuild that would find the same.
        """
        if n < 4:
            raise NasError(f"fitting a correction needs at least 4 networks, got {n}")
        archs = fit_archs(space, n, seed)
        units = list({u.text: u for a in archs for u in plan(space, a).units}.values())  # each once
        # The entries the fit needs are measured first (minutes on a table filled lazily), so that
        # `unit_progress` can show them; `progress` wraps the network timings.
        self._measure_missing(space, units, unit_progress)
        measured = np.array(self.measure_networks(space, archs, passes, progress))
        correction = self._fit(space, archs, measured)
        typical = (float(np.median(measured)), int(np.median([len(plan(space, a).units) for a in archs])),
                   self.deployed_ratio())
        self.last_fit_note = symptom(correction, *typical)
        if self.last_fit_note is not None:
            before = np.array([self.sum_ms(space, a) for a in archs])
            for batch in batches(shuffled(units, SHUFFLE_SEED), UNIT_GROUP):
                self.measure_units(space, batch, anchored=False)  # the table is in doubt: not its own referee
            correction = self._fit(space, archs, measured)
            moved = float(np.median(np.abs(np.array([self.sum_ms(space, a) for a in archs]) / before - 1)))
            if moved <= REPRODUCED:
                self.last_fit_note = symptom(
                    correction, *typical, advice=f"re-timing the fit networks' units reproduced their sums (median "
                    f"change {moved:.0%}), so this is how networks run on this machine now, not a timing slip: the "
                    f"correction keeps it; `nas lut validate` checks it")
            else:
                note = symptom(correction, *typical)
                self.last_fit_note = None if note is None else f"{note} (after re-timing the fit networks' units)"
        self.table.correction = correction
        return correction

    def _fit(self, space: SearchSpace, archs: Sequence, measured: np.ndarray) -> Correction:
        sums = np.array([self.sum_ms(space, a) for a in archs])
        counts = np.array([len(plan(space, a).units) for a in archs], dtype=float)
        return fitted_correction(sums, counts, measured)
