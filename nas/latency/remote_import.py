"""`nas lut import`: a remote device's timings (results.csv) become a latency table of its own profile."""
from __future__ import annotations

import math
import os
from pathlib import Path

from nas.latency.remote_files import (MANIFEST, RESULT_COLUMNS, ManifestRow, RemoteError, read_csv, read_manifest,
                                      row_cells)
from proxies.latency import BACKENDS, DeviceProfile, Entry, LatencyTable


def remote_profile(device: str, backend: str, threads: int = 1, batch_size: int = 1) -> DeviceProfile:
    """The profile of a device timed with its own tool: no torch version (it never runs here)."""
    if not isinstance(device, str) or not device.strip():
        raise RemoteError(f"the device name must be a non-empty string, got {device!r}")
    if backend in BACKENDS:
        raise RemoteError(f"backend {backend!r} is a local backend; name the remote device's runtime "
                          f"otherwise (e.g. 'tflite', 'ort-mobile')")
    try:
        return DeviceProfile(backend=backend, device=" ".join(device.split()), threads=threads,
                             batch_size=batch_size, torch_version=None)
    except ValueError as exc:
        raise RemoteError(f"remote device profile: {exc}") from None


def _number(path: Path, number: int, name: str, text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RemoteError(f"{path}: row {number}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RemoteError(f"{path}: row {number}: {name} {text!r} is not a finite number")
    if positive and value <= 0:
        raise RemoteError(f"{path}: row {number}: {name} must be positive, got {text}")
    if value < 0:
        raise RemoteError(f"{path}: row {number}: {name} must not be negative, got {text}")
    return value


def _read_results(path: Path, manifest: dict[str, ManifestRow] | None, manifest_path: Path) -> dict[str, Entry]:
    header, rows = read_csv(path, "results")
    unknown = [c for c in header if c not in RESULT_COLUMNS]
    if unknown:
        raise RemoteError(f"{path}: unknown column {unknown[0]!r}; expected key (or file), ms, "
                          f"and optionally spread_ms, runs")
    if "ms" not in header:
        raise RemoteError(f"{path}: missing column 'ms' (the header has {', '.join(header)})")
    if "key" not in header:
        if "file" not in header:
            raise RemoteError(f"{path}: missing column 'key' (the header has {', '.join(header)})")
        if manifest is None:
            raise RemoteError(f"{path}: rows are named by file, but there is no {MANIFEST} beside it "
                              f"to map files to keys (expected {manifest_path})")
    if not rows:
        raise RemoteError(f"{path}: no rows below the header")
    by_name = {Path(f).name: r for f, r in (manifest or {}).items()}
    keys = {r.key for r in (manifest or {}).values()}
    entries: dict[str, Entry] = {}
    first_row: dict[str, int] = {}
    unfilled: list[int] = []
    for number, cells in rows:
        row = row_cells(path, header, number, cells)
        key, file = row.get("key", ""), row.get("file", "")
        if file and manifest is not None:
            listed = manifest.get(file) or by_name.get(Path(file).name)
            if listed is None:
                raise RemoteError(f"{path}: row {number}: file {file!r} is not in {manifest_path}")
            if key and key != listed.key:
                raise RemoteError(f"{path}: row {number}: file {file!r} holds key {listed.key!r} in "
                                  f"{manifest_path}, not {key!r}")
            key = listed.key
        elif not key:
            raise RemoteError(f"{path}: row {number}: no key")
        elif manifest is not None and key not in keys:
            raise RemoteError(f"{path}: row {number}: key {key!r} is not in {manifest_path}")
        if key in first_row:
            raise RemoteError(f"{path}: row {number}: key {key!r} is already in row {first_row[key]}")
        first_row[key] = number
        if not row["ms"]:
            unfilled.append(number)
            continue
        ms = _number(path, number, "ms", row["ms"], positive=True)
        spread = _number(path, number, "spread_ms", row["spread_ms"], positive=False) if row.get("spread_ms") else 0.0
        runs = 1
        if row.get("runs"):
            if not row["runs"].isdigit() or int(row["runs"]) < 1:
                raise RemoteError(f"{path}: row {number}: runs {row['runs']!r} is not a positive integer")
            runs = int(row["runs"])
        entries[key] = Entry(ms=ms, spread_ms=spread, runs=runs, rounds=1)
    if unfilled:
        rows_text = "row" if len(unfilled) == 1 else "rows"
        raise RemoteError(f"{path}: {len(unfilled)} of {len(rows)} {rows_text} have no ms (first: row {unfilled[0]}); "
                          f"fill them in or delete the rows you did not time")
    return entries


def import_results(csv_path: str | os.PathLike[str], *, device: str, backend: str, threads: int = 1,
                   batch_size: int | None = None, out: str | os.PathLike[str] | None = None) -> LatencyTable:
    """A latency table for a remote device from its timings in `csv_path`, saved atomically.

    Columns: ``key`` (or ``file`` when a manifest.csv sits beside the CSV),
    ``ms`` (median ms of one inference), optionally ``spread_ms`` and ``runs``.
    With a manifest beside it, every key and file must be one of its rows, and
    `batch_size` (default: the manifest's, else 1) must match it. The table
    goes to `out`, default ``<profile id>.json`` beside the CSV, replacing a
    file there.
    """
    path = Path(csv_path)
    manifest_path = path.parent / MANIFEST
    manifest = read_manifest(manifest_path) if manifest_path.is_file() else None
    exported = next(iter(manifest.values())).batch_size if manifest else None
    if batch_size is None:
        batch_size = exported or 1
    elif exported is not None and batch_size != exported:
        raise RemoteError(f"batch size {batch_size} does not match {manifest_path}, "
                          f"whose files were exported with batch size {exported}")
    profile = remote_profile(device, backend, threads, batch_size)
    if not path.is_file() and path.exists():
        raise RemoteError(f"{path}: not a file")
    entries = _read_results(path, manifest, manifest_path)
    table = LatencyTable(profile, entries)
    table.save(Path(out) if out is not None else path.parent / f"{profile.id}.json")
    return table
