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


class LatencyModel:
    """Predicts latency from a table; measures (and records) missing units unless told not to."""

    def __init__(self, table: LatencyTable, *, measure_missing: bool = True,
                 measure_options: Mapping[str, Any] | None = None) -> None:
        self.table = table
        self.measure_missing = measure_missing
        self.measure_options = dict(measure_options or {})

    @property
    def profile(self) -> DeviceProfile:
        return self.table.profile

    def measure_unit(self, unit: Unit, space: SearchSpace) -> Entry:
        """Measure one unit alone with the table's harness and record it."""
        module = build_unit(unit.key, space.norm)
        m = measure_module(module, unit.key.input_shape, self.profile, **self.measure_options)
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

    def fill(self, space: SearchSpace, units: Sequence[Unit], progress: Callable[[Iterable], Iterable] | None = None) -> int:
        """Measure every unit of `units` the table lacks, journaled so a killed run loses one entry at most."""
        todo = self.missing(space, units)
        if not todo:
            return 0
        with self.table.open_journal():
            for unit in progress(todo) if progress else todo:
                self.measure_unit(unit, space)
        return len(todo)

    def sum_ms(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> float:
        """Plain sum of the units' table entries."""
        return sum(self.unit_ms(u, space) for u in plan(space, arch or {}).units)

    def predict_ms(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> float:
        """Sum of entries, corrected by the table's fitted correction when it has one."""
        total = self.sum_ms(space, arch)
        c = self.table.correction
        return c.scale * total + c.offset_ms if c is not None else total

    def measure_network(self, space: SearchSpace, arch: Mapping[str, Any] | None = None) -> Measurement:
        """End-to-end latency of the built network with the same harness and profile."""
        net = plan(space, arch or {})
        model = build(space, arch)
        return measure_module(model, net.input_shape, self.profile, **self.measure_options)

    def fit_correction(self, space: SearchSpace, n: int = 12, seed: int = 0,
                       progress: Callable[[Iterable], Iterable] | None = None) -> Correction:
        """Fit measured = scale * sum + offset on `n` random networks (a seed stream validation never uses)."""
        if n < 2:
            raise NasError(f"fitting a correction needs at least 2 networks, got {n}")
        archs = fit_archs(space, n, seed)
        sums, measured = [], []
        for arch in progress(archs) if progress else archs:
            sums.append(self.sum_ms(space, arch))
            measured.append(self.measure_network(space, arch).median_ms)
        x, y = np.asarray(sums), np.asarray(measured)
        scale, offset = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (1.0, float(np.mean(y - x)))
        mape = float(np.mean(np.abs(scale * x + offset - y) / y))
        correction = Correction(scale=float(scale), offset_ms=float(offset), n=n, mape=mape)
        self.table.correction = correction
        return correction


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


def validate(model: LatencyModel, space: SearchSpace, n: int, seed: int = 0,
             progress: Callable[[Iterable], Iterable] | None = None, worst: int = 5) -> dict[str, Any]:
    """Predict and measure `n` random networks end to end; agreement figures and the worst cases."""
    from nas.space import encode
    from nas.stats import kendall, spearman

    rng = random.Random(seed)
    archs = [sample(space, rng) for _ in range(n)]
    rows = []
    for arch in progress(archs) if progress else archs:
        predicted = model.predict_ms(space, arch)
        measured = model.measure_network(space, arch)
        rows.append({"arch": encode(space, arch), "predicted_ms": predicted, "measured_ms": measured.median_ms,
                     "measured_spread_ms": measured.spread_ms, "error": predicted / measured.median_ms - 1})
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
        "correction": None if c is None else {"scale": c.scale, "offset_ms": c.offset_ms, "n": c.n, "mape": c.mape},
        "worst": sorted(rows, key=lambda r: -abs(r["error"]))[:worst],
        "rows": rows,
    }
