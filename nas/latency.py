"""Predicted latency of architectures: a sum of per-unit table entries plus a fitted correction.

The table (`proxies.latency.LatencyTable`) holds one measured latency per
unit key for one device profile. A unit missing from the table is measured
on first use (unless measuring is off), so a new user's first search needs
no separate step. A plain sum misses per-call overhead and what the runtime
fuses between units, so a per-profile linear correction is fitted on
networks measured end to end, and reported with its error.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from nas.builder import build, build_unit
from nas.errors import NasError
from nas.space import SearchSpace, Unit, canonical, plan, sample
from proxies.latency import (Correction, DeviceProfile, Entry, LatencyTable, Measurement, measure_modules)
from proxies.latency.reference import Probe, level_factor
from proxies.latency.table import VERSION

ENV_LUT_DIR = "NAS_LUT_DIR"
FIT_SEED_OFFSET = 1_000_000  # fit networks come from a seed stream that validation never uses
Z90 = 1.645  # a two-sided 90% interval (and a one-sided 95% bound) of a normal error

# What "latency" means everywhere (table entries, fit, validation, `arch stats --measure`, the
# winner check): the median of warm, back-to-back calls of the module run alone, as
# torch.utils.benchmark reports it, at the table's speed level (the probe's time when the table's
# first group was timed). Units are timed in rotation, a group at a time, to share this machine's
# second-to-second drift; each visit makes one untimed call (the other members evicted this one's
# weights) and then a burst of timed calls. Networks are timed alone (NETWORK_GROUP). The probe is
# timed right before and after every group, and a group timed while the machine ran at another
# speed than the table's level (beyond the probe's own noise, PROBE_BAND) is rescaled to the level.
# Groups of units are drawn in a seeded shuffle, so the units of one network come from many groups.
UNIT_MEASURE = {"warmup": 1, "min_runs": 3, "burst": 4, "max_rounds": 2, "target_rel_spread": 0.10}
NETWORK_MEASURE = {"warmup": 2, "min_runs": 4, "burst": 5, "max_rounds": 2, "target_rel_spread": 0.05}
# A correction this far from the plain sum means entries and networks were not timed at one speed
# or in one way: a symptom to re-time, not to fit away. Networks measured 5-17% above the sum of
# their warm units here (likely cache: in a network a unit's weights are not in L2 as in its own
# warm loop; not isolated), so a correction within 25% is expected.
SYMPTOM = 0.25  # |scale - 1|, or the correction's change to a typical network, beyond this
# A group whose probe readings before and after differ by more than this was timed while the
# machine changed speed: it is timed again, up to GROUP_TRIES times in all.
STATE_TOLERANCE = 0.10
GROUP_TRIES = 3
DEFAULT_MARGIN = 0.05  # the search's latency margin before a table has residuals from unseen networks
UNIT_GROUP = 32  # units timed together (a few seconds); a killed build loses at most this group
# Networks are timed alone, between two probe readings: in rotation with 7 others they read 4%
# above torch.utils.benchmark on the same network at the same machine speed (their weights compete
# in L3), alone our harness and the referee agree within 1% (50 networks, benchmarks/latency_truth.py).
NETWORK_GROUP = 1
SHUFFLE_SEED = 0


def _batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter), pulled lazily from `items`."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _shuffled(items: Sequence, seed: int) -> list:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


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


class MissingEntryError(NasError):
    """A unit has no entry and measuring is disabled."""


def default_table_dir() -> Path:
    """Per-user cache folder for tables: $NAS_LUT_DIR, else $XDG_CACHE_HOME/mobile-nas/latency."""
    if os.environ.get(ENV_LUT_DIR):
        return Path(os.environ[ENV_LUT_DIR])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mobile-nas" / "latency"


def default_table_path(profile: DeviceProfile) -> Path:
    """One file per profile and table version (a version-1 table of the same profile stays untouched)."""
    return default_table_dir() / f"{profile.id}-v{VERSION}.json"


def open_table(profile: DeviceProfile, path: str | os.PathLike | None = None) -> LatencyTable:
    """The table for `profile` at `path` (default: the cache folder); a new empty one if none exists."""
    target = Path(path) if path else default_table_path(profile)
    if target.exists() or Path(f"{target}.journal").exists():
        return LatencyTable.load(target, expect=profile)
    return LatencyTable.create(profile, target)


def model_for(backend: str = "torch", threads: int | None = None, batch_size: int = 1,
              lut: str | os.PathLike | None = None, measure_missing: bool = True) -> LatencyModel:
    """The table for this machine's profile: `lut` when it names a file, else the per-user cache.
    A table imported from a remote device is used as it is and never measured into, since this
    machine is not that device; any other table must match this machine's profile."""
    from proxies.latency import current_profile

    if lut is not None and Path(lut).exists():  # load once: a large table's checksum is not free
        table = LatencyTable.load(lut)
        if table.profile.remote:
            return LatencyModel(table, measure_missing=False)
    threads = threads if threads is not None else os.cpu_count() or 1
    profile = current_profile(backend=backend, threads=threads, batch_size=batch_size)
    if lut is not None and Path(lut).exists():
        table.require_profile(profile)
        return LatencyModel(table, measure_missing=measure_missing)
    return LatencyModel(open_table(profile, lut), measure_missing=measure_missing)


class LatencyModel:
    """Predicts latency from a table; measures (and records) missing units unless told not to."""

    def __init__(self, table: LatencyTable, *, measure_missing: bool = True,
                 measure_options: Mapping[str, Any] | None = None,
                 network_options: Mapping[str, Any] | None = None) -> None:
        self.table = table
        self.measure_missing = measure_missing
        # Units are many and small: fewer, shorter rounds keep a table of thousands in minutes.
        self.measure_options = dict(UNIT_MEASURE if measure_options is None else measure_options)
        self.network_options = dict(network_options or {})
        self.last_pass_spread: list[float] = []
        self.last_raw: list[float] = []
        self.last_drift_cv: float | None = None  # the probe's spread across the last call's groups
        self.last_speed: float | None = None  # median probe reading / table level over the last call's groups
        self.last_fit_note: str | None = None  # a correction symptom found by the last fit, said in one line
        self.probe_readings: list[float] = []  # every probe reading of this session (ms)
        self.retimed_groups = 0  # groups timed again because the machine changed speed during them
        self._probe: Probe | None = None

    @property
    def profile(self) -> DeviceProfile:
        return self.table.profile

    def probe_ms(self) -> float:
        """One reading of the machine's speed: the probe's median of warm back-to-back calls."""
        if self._probe is None:
            self._probe = Probe(self.profile)
        return self._probe.time_ms()

    def _timed_with_probe(self, items: list, options: Mapping[str, Any]) -> tuple[list[Measurement], float]:
        """Time (module, shape) items in one rotation between two probe readings; their figures and the
        factor that puts them at the table's level. A group during which the machine changed speed is
        timed again; the first reading a table sees becomes its level."""
        for attempt in range(GROUP_TRIES):
            before = self.probe_ms()
            figures = measure_modules(items, self.profile, copy=False, **options)
            after = self.probe_ms()
            if abs(after / before - 1) <= STATE_TOLERANCE:
                break
            self.retimed_groups += attempt < GROUP_TRIES - 1
        reading = (before * after) ** 0.5
        self.probe_readings.append(reading)
        if self.table.reference is None:
            self.table.set_reference(Entry(ms=reading, spread_ms=abs(after - before), runs=2, rounds=1))
        return figures, level_factor(self.table.reference.ms, reading)

    def current_speed(self, readings: int = 8) -> float:
        """How fast the machine runs in this session against the table's level (> 1: slower), from the
        probe: the median of this many fresh readings and every earlier one of this session, taken as 1
        within the probe's noise (PROBE_BAND). A spot reading alone misled: 8 readings said 1.11x at a
        search's start and the machine ran 0.94x during its winner check minutes later. A table
        without a level takes it from these readings."""
        fresh = [self.probe_ms() for _ in range(readings)]
        self.probe_readings.extend(fresh)
        now = float(np.median(self.probe_readings))
        if self.table.reference is None:
            self.table.set_reference(Entry(ms=now, spread_ms=float(np.subtract(*np.percentile(fresh, [75, 25]))),
                                           runs=readings, rounds=1))
        return 1 / level_factor(self.table.reference.ms, now)

    def measure_units(self, space: SearchSpace, units: Sequence[Unit]) -> list[Entry]:
        """Time `units` together in rotation beside the probe, at the table's level, and record them."""
        if self.profile.remote:
            raise MissingEntryError(
                f"{self.table.path or 'the table'}: no latency for unit '{units[0].text}', and this table was "
                f"imported from {self.profile.device} ({self.profile.backend}): time the missing units there "
                f"(`nas lut export-ops`) and import them again")
        modules = [(build_unit(u.key, space.norm), u.key.input_shape) for u in units]
        figures, factor = self._timed_with_probe(modules, self.measure_options)
        entries = [Entry(ms=m.median_ms * factor, spread_ms=m.spread_ms * factor, runs=m.runs, rounds=m.rounds)
                   for m in figures]
        for unit, entry in zip(units, entries):
            self.table.add(unit.text, entry)
        return entries

    def measure_unit(self, unit: Unit, space: SearchSpace) -> Entry:
        """Measure one unit and record it."""
        return self.measure_units(space, [unit])[0]

    def unit_ms(self, unit: Unit, space: SearchSpace) -> float:
        entry = self.table.get(unit.text)
        if entry is None:
            self._measure_missing(space, [unit])
            entry = self.table.entries[unit.text]
        return entry.ms

    def missing(self, space: SearchSpace, units: Iterable[Unit]) -> list[Unit]:
        seen: set[str] = set()
        out = []
        for u in units:
            if u.text not in seen and u.text not in self.table:
                seen.add(u.text)
                out.append(u)
        return out

    def _measure_missing(self, space: SearchSpace, units: Sequence[Unit]) -> None:
        """Measure the units the table lacks (all of one network's together), or say how to fill it."""
        todo = self.missing(space, units)
        if not todo:
            return
        if not self.measure_missing:
            where = self.table.path or "the table"
            raise MissingEntryError(f"{where}: no latency for unit '{todo[0].text}' "
                                    f"(space {space.name}); run `nas lut build --space {space.file}`")
        for batch in _batches(todo, UNIT_GROUP):
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
                order = _shuffled(todo, SHUFFLE_SEED + sweep)
                for batch in _batches(progress(order) if progress else order, UNIT_GROUP):
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
        """The search's default latency margin: the upper end of measured / predicted - 1 on unseen
        networks (mean + 1.645 sd, one-sided 95%), or DEFAULT_MARGIN before any such figures exist."""
        c = self.table.correction
        if c is None or c.residual_n < 4:
            return DEFAULT_MARGIN
        return max(0.0, c.residual_mean + Z90 * c.residual_sd)

    def network(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> tuple[Any, tuple[int, ...]]:
        """The built network of `arch` and its input shape, ready to be timed."""
        return build(space, arch), plan(space, arch or {}).input_shape

    def measure_networks(self, space: SearchSpace, archs: Sequence[Mapping[str, Any]], passes: int = 3,
                         progress: Callable[[Iterable], Iterable] | None = None) -> list[float]:
        """End-to-end medians of several networks at the table's speed level, over `passes` sweeps.

        Each network is timed in a group of NETWORK_GROUP (alone) between two probe readings; each
        sweep reshuffles the order, so a network's figure is the median of timings taken minutes
        apart. A group timed while the machine ran beyond the probe's noise from the table's level
        is rescaled to it (`_timed_with_probe`). Kept for the caller: the raw medians as timed
        (`last_raw`), the probe's spread across groups (`last_drift_cv`), the machine's speed
        against the level (`last_speed`, > 1: slower now) and each network's spread between passes
        (`last_pass_spread`).
        """
        raw: list[list[float]] = [[] for _ in archs]
        factors: list[list[float]] = [[] for _ in archs]
        speeds = []  # each group's probe reading over the level
        order = [(p, i) for p in range(max(1, passes)) for i in _shuffled(range(len(archs)), SHUFFLE_SEED + p)]
        options = {**NETWORK_MEASURE, **self.network_options}
        for batch in _batches(progress(order) if progress else order, NETWORK_GROUP):
            groups: dict[int, list[int]] = {}
            for p, i in batch:  # a batch may straddle two sweeps: a network never meets itself
                groups.setdefault(p, []).append(i)
            for members in groups.values():
                figures, factor = self._timed_with_probe([self.network(space, archs[i]) for i in members], options)
                speeds.append(self.probe_readings[-1] / self.table.reference.ms)
                for i, m in zip(members, figures):
                    raw[i].append(m.median_ms)
                    factors[i].append(factor)
        self.last_raw = [float(np.median(r)) for r in raw]
        self.last_drift_cv = float(np.std(speeds) / np.mean(speeds))
        self.last_speed = float(np.median(speeds))
        runs = [[m * f for m, f in zip(ms, fs)] for ms, fs in zip(raw, factors)]
        self.last_pass_spread = [float(np.std(r) / np.mean(r)) for r in runs]
        return [float(np.median(r)) for r in runs]

    def fit_correction(self, space: SearchSpace, n: int = 20, seed: int = 0, passes: int = 3,
                       progress: Callable[[Iterable], Iterable] | None = None) -> Correction:
        """Fit a correction on `n` random networks (a seed stream validation never uses).

        Four nested models are tried: the plain sum, sum + offset, scale * sum + offset, and
        scale * sum + per_unit * units + offset. The one with the lowest leave-one-out error is
        kept, so on a noisy machine a few networks cannot talk the fit into nonsense. A result far
        from the plain sum (`symptom`) means some entries were timed unlike the networks: the fit
        networks' units are timed again, once, and the fit repeated; what remains is said in
        `last_fit_note`.
        """
        if n < 4:
            raise NasError(f"fitting a correction needs at least 4 networks, got {n}")
        archs = fit_archs(space, n, seed)
        measured = np.array(self.measure_networks(space, archs, passes, progress))
        correction = self._fit(space, archs, measured)
        typical = (float(np.median(measured)), int(np.median([len(plan(space, a).units) for a in archs])))
        self.last_fit_note = symptom(correction, *typical)
        if self.last_fit_note is not None:
            units = {u.text: u for a in archs for u in plan(space, a).units}
            for batch in _batches(_shuffled(list(units.values()), SHUFFLE_SEED), UNIT_GROUP):
                self.measure_units(space, batch)
            correction = self._fit(space, archs, measured)
            note = symptom(correction, *typical)
            self.last_fit_note = None if note is None else f"{note} (after re-timing the fit networks' units)"
        self.table.correction = correction
        return correction

    def _fit(self, space: SearchSpace, archs: Sequence, measured: np.ndarray) -> Correction:
        sums = np.array([self.sum_ms(space, a) for a in archs])
        counts = np.array([len(plan(space, a).units) for a in archs], dtype=float)
        scale, per_unit, offset, loo = choose_correction(sums, counts, measured)
        fitted = scale * sums + per_unit * counts + offset
        return Correction(scale=float(scale), offset_ms=float(offset), per_unit_ms=float(per_unit), n=len(archs),
                          mape=float(np.mean(np.abs(fitted - measured) / measured)),
                          residual_mean=float(np.mean(loo)), residual_sd=float(np.std(loo, ddof=1)),
                          residual_n=len(archs))


def symptom(c: Correction, typical_ms: float, typical_units: int = 20) -> str | None:
    """One line when a correction is far from "the sum plus cache effects and a small per-call
    overhead" for a network of about `typical_ms` and `typical_units` units, else None."""
    extra = c.offset_ms + c.per_unit_ms * typical_units
    plain = (typical_ms - extra) / c.scale if c.scale > 0 else 0.0  # that network's plain sum
    change = typical_ms / plain - 1 if plain > 0 else math.inf
    if abs(c.scale - 1) > SYMPTOM or abs(change) > SYMPTOM:
        return (f"the correction is far from the plain sum (scale {c.scale:.3f}, offset {c.offset_ms:+.2f} ms, "
                f"{c.per_unit_ms:+.3f} ms per unit: {change:+.0%} on a ~{typical_ms:.1f} ms network): table entries "
                f"and networks disagree by more than cache effects and per-call overhead explain; rebuild the "
                f"table (`nas lut build --refit`)")
    return None


def _design(model: str, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    ones = np.ones_like(sums)
    return {"offset": np.stack([ones], 1), "affine": np.stack([sums, ones], 1),
            "full": np.stack([sums, counts, ones], 1)}[model]


def _coefficients(model: str, sums: np.ndarray, counts: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(scale, per_unit, offset) of one model fitted by least squares."""
    if model == "sum":
        return 1.0, 0.0, 0.0
    target = y - sums if model == "offset" else y
    coef, *_ = np.linalg.lstsq(_design(model, sums, counts), target, rcond=None)
    if model == "offset":
        return 1.0, 0.0, float(coef[0])
    if model == "affine":
        return float(coef[0]), 0.0, float(coef[1])
    return float(coef[0]), float(coef[1]), float(coef[2])


def choose_correction(sums: np.ndarray, counts: np.ndarray,
                      measured: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """Coefficients of the model with the lowest leave-one-out mean absolute percentage error, and
    that model's leave-one-out residuals (measured / predicted - 1 on the network left out)."""
    models = ["sum", "offset", "affine"] + (["full"] if np.ptp(counts) > 0 else [])
    best, best_err, best_loo = "sum", float("inf"), np.zeros(len(sums))
    for model in models:
        held_out = np.empty(len(sums))  # each network predicted by the fit on all the others
        for i in range(len(sums)):
            keep = np.arange(len(sums)) != i
            a, b, c = _coefficients(model, sums[keep], counts[keep], measured[keep])
            held_out[i] = a * sums[i] + b * counts[i] + c
        err = float(np.mean(np.abs(held_out - measured) / measured))
        if err < best_err - 1e-12:
            best, best_err, best_loo = model, err, measured / held_out - 1
    return (*_coefficients(best, sums, counts, measured), best_loo)


def fit_archs(space: SearchSpace, n: int, seed: int = 0) -> list:
    """The networks a correction is fitted on: random, distinct, from a stream apart from validation's."""
    rng = random.Random(FIT_SEED_OFFSET + seed)
    out, seen = [], set()
    for _ in range(50 * n):
        arch = canonical(space, sample(space, rng))
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
        if len(out) == n:
            break
    return out


def _agreement(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    from nas.stats import kendall, spearman

    errors = np.abs(np.asarray(predicted) / np.asarray(measured) - 1)
    return {"within_10pct": float(np.mean(errors <= 0.10)), "mape": float(np.mean(errors)),
            "spearman": spearman(list(predicted), list(measured)), "kendall": kendall(list(predicted), list(measured))}


def validate(model: LatencyModel, space: SearchSpace, n: int, seed: int = 0, passes: int = 3,
             progress: Callable[[Iterable], Iterable] | None = None, worst: int = 5) -> dict[str, Any]:
    """Predict and measure `n` random networks end to end; agreement figures and the worst cases.

    The headline figures compare with measurements at the table's speed level (each group rescaled
    by the probe timed in the same rotation, see `measure_networks`); `raw` gives the same figures
    against the medians as timed, `speed` how the machine's speed compared with the level (> 1:
    slower now) and `drift_cv` how much the probe moved between groups. With a correction and at
    least 10 networks, its residual figures are replaced by these out-of-sample ones.
    """
    from nas.space import encode

    rng = random.Random(seed)
    archs = [sample(space, rng) for _ in range(n)]
    predicted = [model.predict_ms(space, arch) for arch in archs]
    measured = model.measure_networks(space, archs, passes, progress)
    rows = [{"arch": encode(space, a), "predicted_ms": p, "measured_ms": m, "measured_raw_ms": r, "error": p / m - 1}
            for a, p, m, r in zip(archs, predicted, measured, model.last_raw)]
    c = model.table.correction
    residuals = np.asarray(measured) / np.asarray(predicted) - 1
    if c is not None and n >= 10:
        c = model.table.correction = dataclasses.replace(
            c, residual_mean=float(np.mean(residuals)), residual_sd=float(np.std(residuals, ddof=1)), residual_n=n)
    return {
        "n": n,
        "profile": model.profile.id,
        **_agreement(predicted, measured),
        "raw": _agreement(predicted, model.last_raw),
        "passes": passes,
        # How much one network's end-to-end figure moved between passes: the noise floor of the
        # measurement itself, which no table can beat.
        "measurement_cv": float(np.median(model.last_pass_spread)) if passes > 1 else None,
        "drift_cv": model.last_drift_cv,
        "speed": model.last_speed,
        "correction": None if c is None else c.to_dict(),
        "level_ms": model.table.reference.ms if model.table.reference is not None else None,
        "worst": sorted(rows, key=lambda r: -abs(r["error"]))[:worst],
        "rows": rows,
    }
