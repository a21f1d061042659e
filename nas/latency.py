"""Predicted latency of architectures: a sum of per-unit table entries plus a fitted correction.

The table (`proxies.latency.LatencyTable`) holds one measured latency per
unit key for one device profile. A unit missing from the table is measured
on first use (unless measuring is off), so a new user's first search needs
no separate step. A plain sum misses per-call overhead and what the runtime
fuses between units, so a per-profile linear correction is fitted on
networks measured end to end, and reported with its error.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from nas.builder import build, build_unit
from nas.errors import NasError
from nas.space import SearchSpace, Unit, canonical, plan, sample
from proxies.latency import (Correction, DeviceProfile, Entry, LatencyTable, Measurement, measure_module,
                             measure_modules)

ENV_LUT_DIR = "NAS_LUT_DIR"
FIT_SEED_OFFSET = 1_000_000  # fit networks come from a seed stream that validation never uses
REFERENCE_SEED = 2_000_000  # the drift reference, apart from both


# Units and networks are timed in rotation, a group at a time (see measure_interleaved): this
# machine's speed drifts second to second, and rotation spreads every member's runs over the same
# stretch of time. Groups are drawn in a seeded shuffle, so the units of one network come from many
# groups and a slow minute of a long build is spread thinly over every network instead of landing
# on the units of one stage. Measured on 30 sandglass networks: the share within +-10% rose from
# 73% to 97% and Spearman from 0.955 to 0.972 against timing each unit and network alone.
UNIT_MEASURE = {"warmup": 2, "min_runs": 10, "max_rounds": 2, "target_rel_spread": 0.10}
NETWORK_MEASURE = {"warmup": 2, "min_runs": 10, "max_rounds": 2, "target_rel_spread": 0.05}
UNIT_GROUP = 32  # units timed together (a few seconds); a killed build loses at most this group
NETWORK_GROUP = 8  # networks timed together
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
    return default_table_dir() / f"{profile.id}.json"


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
        self.last_drift_cv: float | None = None
        self.last_reference_ms: float | None = None

    @property
    def profile(self) -> DeviceProfile:
        return self.table.profile

    def measure_units(self, space: SearchSpace, units: Sequence[Unit]) -> list[Entry]:
        """Time `units` alone, together in rotation, with the table's profile, and record them."""
        if self.profile.remote:
            raise MissingEntryError(
                f"{self.table.path or 'the table'}: no latency for unit '{units[0].text}', and this table was "
                f"imported from {self.profile.device} ({self.profile.backend}): time the missing units there "
                f"(`nas lut export-ops`) and import them again")
        modules = [(build_unit(u.key, space.norm), u.key.input_shape) for u in units]
        figures = measure_modules(modules, self.profile, copy=False, **self.measure_options)
        entries = [Entry(ms=m.median_ms, spread_ms=m.spread_ms, runs=m.runs, rounds=m.rounds) for m in figures]
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
        units = plan(space, arch or {}).units
        total = self._entries_ms(space, units)
        c = self.table.correction
        if c is None:
            return total
        return c.scale * total + c.per_unit_ms * len(units) + c.offset_ms

    def network(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> tuple[Any, tuple[int, ...]]:
        """The built network of `arch` and its input shape, ready to be timed."""
        return build(space, arch), plan(space, arch or {}).input_shape

    def measure_network(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> Measurement:
        """End-to-end latency of the built network alone, with the same harness and profile."""
        model, shape = self.network(space, arch)
        return measure_module(model, shape, self.profile, copy=False, **self.network_options)

    def measure_networks(self, space: SearchSpace, archs: Sequence[Mapping[str, Any]], passes: int = 3,
                         progress: Callable[[Iterable], Iterable] | None = None,
                         reference: Mapping[str, Any] | None = None,
                         level_ms: float | None = None) -> list[float]:
        """End-to-end medians of several networks, timed in rotation in groups, over `passes` sweeps.

        Each sweep reshuffles the groups, so a network's figure is the median of timings taken
        minutes apart and beside different company. With `reference` (an arch), every group also
        times that one network, and each figure is rescaled by the reference's median over the
        whole call divided by its time in that group: on this machine whole groups run 7-18%
        faster or slower than others, and the reference, timed in the same rotation, moves with
        them. `level_ms` replaces that median (the reference's time when a correction was fitted,
        so validation is expressed at the speed the fit describes). Kept for the caller: the level
        used (`last_reference_ms`), the raw medians (`last_raw`) and the reference's spread across
        groups (`last_drift_cv`).
        """
        raw: list[list[float]] = [[] for _ in archs]
        beside: list[list[float]] = [[] for _ in archs]  # the reference's time in each of a network's groups
        order = [(p, i) for p in range(max(1, passes)) for i in _shuffled(range(len(archs)), SHUFFLE_SEED + p)]
        extra = [] if reference is None else [self.network(space, reference)]
        for batch in _batches(progress(order) if progress else order, NETWORK_GROUP):
            groups: dict[int, list[int]] = {}
            for p, i in batch:  # a batch may straddle two sweeps: a network never meets itself
                groups.setdefault(p, []).append(i)
            for members in groups.values():
                items = [self.network(space, archs[i]) for i in members] + extra
                figures = measure_modules(items, self.profile, copy=False, **NETWORK_MEASURE)
                for i, m in zip(members, figures):
                    raw[i].append(m.median_ms)
                    beside[i].append(figures[-1].median_ms)
        self.last_raw = [float(np.median(r)) for r in raw]
        self.last_drift_cv = None
        runs = raw
        if extra:
            refs = np.array([r for rs in beside for r in rs])
            self.last_drift_cv = float(np.std(refs) / np.mean(refs))
            level = self.last_reference_ms = float(np.median(refs) if level_ms is None else level_ms)
            runs = [[m * level / r for m, r in zip(ms, rs)] for ms, rs in zip(raw, beside)]
        self.last_pass_spread = [float(np.std(r) / np.mean(r)) for r in runs]
        return [float(np.median(r)) for r in runs]

    def fit_correction(self, space: SearchSpace, n: int = 20, seed: int = 0, passes: int = 3,
                       progress: Callable[[Iterable], Iterable] | None = None) -> Correction:
        """Fit a correction on `n` random networks (a seed stream validation never uses).

        Four nested models are tried: the plain sum, sum + offset, scale * sum + offset, and
        scale * sum + per_unit * units + offset. The one with the lowest leave-one-out error is
        kept, so on a noisy machine a few networks cannot talk the fit into nonsense.
        """
        if n < 4:
            raise NasError(f"fitting a correction needs at least 4 networks, got {n}")
        archs = fit_archs(space, n, seed)
        sums = np.array([self.sum_ms(space, a) for a in archs])
        counts = np.array([len(plan(space, a).units) for a in archs], dtype=float)
        measured = np.array(self.measure_networks(space, archs, passes, progress, reference=reference_arch(space)))
        scale, per_unit, offset = choose_correction(sums, counts, measured)
        fitted = scale * sums + per_unit * counts + offset
        correction = Correction(scale=float(scale), offset_ms=float(offset), per_unit_ms=float(per_unit), n=n,
                                mape=float(np.mean(np.abs(fitted - measured) / measured)),
                                reference_ms=self.last_reference_ms)
        self.table.correction = correction
        return correction


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


def choose_correction(sums: np.ndarray, counts: np.ndarray, measured: np.ndarray) -> tuple[float, float, float]:
    """Coefficients of the model with the lowest leave-one-out mean absolute percentage error."""
    models = ["sum", "offset", "affine"] + (["full"] if np.ptp(counts) > 0 else [])
    best, best_err = "sum", float("inf")
    for model in models:
        errors = []
        for i in range(len(sums)):
            keep = np.arange(len(sums)) != i
            a, b, c = _coefficients(model, sums[keep], counts[keep], measured[keep])
            errors.append(abs(a * sums[i] + b * counts[i] + c - measured[i]) / measured[i])
        err = float(np.mean(errors))
        if err < best_err - 1e-12:
            best, best_err = model, err
    return _coefficients(best, sums, counts, measured)


def reference_arch(space: SearchSpace) -> Any:
    """The network timed beside every group when fitting and validating: a fixed random one of the space."""
    return sample(space, random.Random(REFERENCE_SEED))


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

    The headline figures compare with drift-corrected measurements (each group's timings rescaled
    by a reference network timed in the same rotation, see `measure_networks`); `raw` gives the
    same figures against the plain medians, and `drift_cv` how much the reference moved.
    """
    from nas.space import encode

    rng = random.Random(seed)
    archs = [sample(space, rng) for _ in range(n)]
    predicted = [model.predict_ms(space, arch) for arch in archs]
    c = model.table.correction
    measured = model.measure_networks(space, archs, passes, progress, reference=reference_arch(space),
                                      level_ms=c.reference_ms if c is not None else None)
    rows = [{"arch": encode(space, a), "predicted_ms": p, "measured_ms": m, "measured_raw_ms": r, "error": p / m - 1}
            for a, p, m, r in zip(archs, predicted, measured, model.last_raw)]
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
        "correction": None if c is None else c.to_dict(),
        "reference_ms": model.last_reference_ms,
        "worst": sorted(rows, key=lambda r: -abs(r["error"]))[:worst],
        "rows": rows,
    }
