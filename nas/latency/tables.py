"""Where latency tables live and which one a machine uses: the cache folder, one file per profile."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.cache import ENV_LUT_DIR, default_table_dir
from nas.latency.model import LatencyModel
from nas.space import load_space, unique_units
from proxies.latency import Correction, DeviceProfile, LatencyTable
from proxies.latency.table import VERSION

__all__ = ["ENV_LUT_DIR", "TableInfo", "default_table_dir", "default_table_path", "model_for", "open_table",
           "table_info"]


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



@dataclass(frozen=True)
class TableInfo:
    """What `nas lut show` tells of a table file: profile, size, correction, speed level, and optionally
    how many of a space's units it covers."""

    file: str
    profile_id: str
    profile: dict[str, Any]
    entries: int
    correction: Correction | None
    level_ms: float | None  # the block probe's time at the table's speed level (None: nothing measured here)
    coverage: dict[str, Any] | None = None  # space, units, covered, fraction
    network_level_ms: float | None = None  # the network probe's time at the same level

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`nas lut show --json`)."""
        info: dict[str, Any] = {"file": self.file, "profile_id": self.profile_id, "profile": self.profile,
                                "entries": self.entries,
                                "correction": None if self.correction is None else self.correction.to_dict(),
                                "level_ms": self.level_ms, "network_level_ms": self.network_level_ms}
        if self.coverage is not None:
            info["coverage"] = self.coverage
        return info


def table_info(file: str, space_file: str | None = None) -> TableInfo:
    """Read the table at `file`; with `space_file`, count the space's unique units it holds."""
    table = LatencyTable.load(file)
    coverage = None
    if space_file:
        keys = unique_units(load_space(space_file))
        have = sum(1 for k in keys if k in table)
        coverage = {"space": space_file, "units": len(keys), "covered": have, "fraction": have / len(keys)}
    return TableInfo(file=file, profile_id=table.profile.id, profile=table.profile.to_dict(), entries=len(table),
                     correction=table.correction,
                     level_ms=table.reference.ms if table.reference is not None else None, coverage=coverage,
                     network_level_ms=None if table.network_reference is None else table.network_reference.ms)
