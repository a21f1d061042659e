"""Cost of an architecture as a sum of per-unit entries, each counted once with fvcore and cached.

Units are independent given their key (static config + input shape), so a
candidate's params, MACs and FLOPs are sums of cached entries: scoring a new
candidate plans it (pure Python) and adds numbers; it never traces a network.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from nas.builder import build, build_unit
from nas.cache import default_table_dir
from nas.ops import deferred_init
from nas.space import SearchSpace, Unit, plan
from proxies.atomic import write_bytes_atomic
from proxies.flops import Counts, count_module


def _rules_fingerprint() -> str:
    """Changes with the counting rules, the operators' code, torch or fvcore: a stale cache is never read."""
    import fvcore
    import torch

    import nas.ops
    import proxies.flops

    digest = hashlib.sha256(f"{torch.__version__}|{getattr(fvcore, '__version__', '')}".encode())
    for path in [Path(proxies.flops.__file__), *sorted(Path(nas.ops.__file__).parent.glob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def default_cost_cache() -> Path:
    """Per-unit counts persist beside the latency tables (fvcore traces take ~20 ms a unit)."""
    return default_table_dir() / f"unit-counts-{_rules_fingerprint()}.json"


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

    def __init__(self, cache_file: str | os.PathLike | None = None) -> None:
        """With `cache_file`, counts are read from it and `save()` writes new ones back."""
        self._cache: dict[str, Counts] = {}
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self._saved = 0
        if self.cache_file is not None and self.cache_file.exists():
            try:
                data = json.loads(self.cache_file.read_text())
                self._cache = {k: Counts(**v) for k, v in data["units"].items()}
            except (ValueError, KeyError, TypeError):
                self._cache = {}  # a damaged cache is only lost time: it is rebuilt and rewritten
            self._saved = len(self._cache)

    @classmethod
    def persistent(cls) -> CostModel:
        """A model backed by the per-user cache file."""
        return cls(default_cost_cache())

    def save(self) -> None:
        """Write the cache file atomically if units were counted since it was read."""
        if self.cache_file is None or len(self._cache) == self._saved:
            return
        doc = {"format": "nas-unit-counts", "units": {k: asdict(v) for k, v in sorted(self._cache.items())}}
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.cache_file, json.dumps(doc, separators=(",", ":")).encode(), 0o644)
        self._saved = len(self._cache)

    def __len__(self) -> int:
        return len(self._cache)

    def has(self, unit: Unit) -> bool:
        return unit.text in self._cache

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
