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
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from nas.builder import build, build_unit
from nas.errors import NasError
from nas.space import SearchSpace, Unit, canonical, plan, sample
from proxies.latency import (Correction, DeviceProfile, Entry, LatencyTable, Measurement,
                             measure_module)

ENV_LUT_DIR = "NAS_LUT_DIR"
FIT_SEED_OFFSET = 1_000_000  # fit networks come from a seed stream that validation never uses


UNIT_MEASURE = {"warmup": 3, "min_runs": 10, "min_time_s": 0.02, "max_rounds": 2, "target_rel_spread": 0.10}


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

    @property
    def profile(self) -> DeviceProfile:
        return self.table.profile

    def measure_unit(self, unit: Unit, space: SearchSpace) -> Entry:
        """Measure one unit alone with the table's harness and record it."""
        if self.profile.remote:
            raise MissingEntryError(
                f"{self.table.path or 'the table'}: no latency for unit '{unit.text}', and this table was "
                f"imported from {self.profile.device} ({self.profile.backend}): time the missing units there "
                f"(`nas lut export-ops`) and import them again")
        module = build_unit(unit.key, space.norm)
        m = measure_module(module, unit.key.input_shape, self.profile, copy=False, **self.measure_options)
        entry = Entry(ms=m.median_ms, spread_ms=m.spread_ms, runs=m.runs, rounds=m.rounds)
        self.table.add(unit.text, entry)
        return entry

    def unit_ms(self, unit: Unit, space: SearchSpace) -> float:
        entry = self.table.get(unit.text)
        if entry is None:
            if not self.measure_missing:
                where = self.table.path or "the table"
                raise MissingEntryError(f"{where}: no latency for unit '{unit.text}' "
                                        f"(space {space.name}); run `nas lut build --space {space.file}`")
            entry = self.measure_unit(unit, space)
        return entry.ms

    def missing(self, space: SearchSpace, units: Iterable[Unit]) -> list[Unit]:
        seen: set[str] = set()
        out = []
        for u in units:
            if u.text not in seen and u.text not in self.table:
                seen.add(u.text)
                out.append(u)
        return out

    def fill(self, space: SearchSpace, units: Sequence[Unit], progress: Callable[[Iterable], Iterable] | None = None,
             passes: int = 1) -> int:
        """Measure every unit of `units` the table lacks, journaled so a killed run loses one entry at most.

        With `passes` > 1 the new units are measured again in later sweeps and each entry keeps the
        median of its passes: on a shared machine whose speed drifts over minutes, spreading an
        entry's timings over the whole build keeps slow spells from landing on a few entries.
        """
        todo = self.missing(space, units)
        if not todo:
            return 0
        medians: dict[str, list[Entry]] = {}
        with self.table.open_journal():
            for sweep in range(max(1, passes)):
                for unit in progress(todo) if progress else todo:
                    medians.setdefault(unit.text, []).append(self.measure_unit(unit, space))
                    if sweep:
                        self.table.add(unit.text, _combine(medians[unit.text]))
        return len(todo)

    def sum_ms(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> float:
        """Plain sum of the units' table entries."""
        return sum(self.unit_ms(u, space) for u in plan(space, arch or {}).units)

    def predict_ms(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> float:
        """Sum of entries, corrected by the table's fitted correction when it has one."""
        units = plan(space, arch or {}).units
        total = sum(self.unit_ms(u, space) for u in units)
        c = self.table.correction
        if c is None:
            return total
        return c.scale * total + c.per_unit_ms * len(units) + c.offset_ms

    def measure_network(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> Measurement:
        """End-to-end latency of the built network with the same harness and profile."""
        net = plan(space, arch or {})
        model = build(space, arch)
        return measure_module(model, net.input_shape, self.profile, copy=False, **self.network_options)

    def measure_networks(self, space: SearchSpace, archs: Sequence[Mapping[str, Any]], passes: int = 3,
                         progress: Callable[[Iterable], Iterable] | None = None) -> list[float]:
        """End-to-end medians of several networks, measured in `passes` interleaved sweeps.

        Each network's figure is the median over sweeps taken minutes apart, so a slow spell of a
        shared machine moves one sweep of many networks rather than every sweep of one.
        """
        runs: list[list[float]] = [[] for _ in archs]
        order = [(p, i) for p in range(max(1, passes)) for i in range(len(archs))]
        for _, i in progress(order) if progress else order:
            runs[i].append(self.measure_network(space, archs[i]).median_ms)
        self.last_pass_spread = [float(np.std(r) / np.mean(r)) for r in runs]
        return [float(np.median(r)) for r in runs]

    def fit_correction(self, space: SearchSpace, n: int = 12, seed: int = 0, passes: int = 3,
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
        measured = np.array(self.measure_networks(space, archs, passes, progress))
        scale, per_unit, offset = choose_correction(sums, counts, measured)
        fitted = scale * sums + per_unit * counts + offset
        correction = Correction(scale=float(scale), offset_ms=float(offset), per_unit_ms=float(per_unit), n=n,
                                mape=float(np.mean(np.abs(fitted - measured) / measured)))
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


def validate(model: LatencyModel, space: SearchSpace, n: int, seed: int = 0, passes: int = 3,
             progress: Callable[[Iterable], Iterable] | None = None, worst: int = 5) -> dict[str, Any]:
    """Predict and measure `n` random networks end to end; agreement figures and the worst cases."""
    from nas.space import encode
    from nas.stats import kendall, spearman

    rng = random.Random(seed)
    archs = [sample(space, rng) for _ in range(n)]
    predicted = [model.predict_ms(space, arch) for arch in archs]
    measured = model.measure_networks(space, archs, passes, progress)
    rows = [{"arch": encode(space, a), "predicted_ms": p, "measured_ms": m, "error": p / m - 1}
            for a, p, m in zip(archs, predicted, measured)]
    pred = [r["predicted_ms"] for r in rows]
    meas = [r["measured_ms"] for r in rows]
    errors = np.abs([r["error"] for r in rows])
    c = model.table.correction
    return {
        "n": n,
        "profile": model.profile.id,
        "within_10pct": float(np.mean(errors <= 0.10)),
        "mape": float(np.mean(errors)),
        "spearman": spearman(pred, meas),
        "kendall": kendall(pred, meas),
        "passes": passes,
        # How much one network's end-to-end figure moved between passes: the noise floor of the
        # measurement itself, which no table can beat.
        "measurement_cv": float(np.median(model.last_pass_spread)) if passes > 1 else None,
        "correction": None if c is None else c.to_dict(),
        "worst": sorted(rows, key=lambda r: -abs(r["error"]))[:worst],
        "rows": rows,
    }
