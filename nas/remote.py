"""Latency tables for devices this machine cannot run: export the units, import the timings.

`export_ops` writes each unique unit of a space as one ONNX file with a
manifest of keys, so a user can time the files on a phone or a board with
that device's own benchmark tool (onnxruntime_perf_test, TFLite's
benchmark_model after a conversion, a vendor SDK). `import_results` turns the
filled-in CSV into a latency table whose profile names that device and
runtime. Such a *remote* profile has no torch version, never equals a local
one, and so its table is only ever read, never measured into.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from nas.builder import build_unit
from nas.errors import NasError
from nas.space import SearchSpace, Unit, plan, sample, unique_units
from proxies.atomic import write_bytes_atomic
from proxies.latency import BACKENDS, DeviceProfile, Entry, LatencyError, LatencyTable, export_onnx

__all__ = ["MANIFEST", "MANIFEST_COLUMNS", "OpsExport", "RemoteError", "TEMPLATE", "export_ops", "import_results",
           "read_manifest", "remote_profile"]

MANIFEST = "manifest.csv"
TEMPLATE = "results_template.csv"
README = "README.txt"
OPS = "ops"
MANIFEST_COLUMNS = ("file", "key", "input_shape", "op", "batch_size")
RESULT_COLUMNS = ("file", "key", "ms", "spread_ms", "runs")
KEY_METADATA = "nas_key"  # every exported file names its own key in the ONNX metadata
SAVE_EVERY = 100  # the manifest is rewritten after this many new files (a killed export redoes at most these)
_FILE_NAME = re.compile(r"u(\d+)\.onnx")


class RemoteError(NasError):
    """An export folder, a manifest or a results file cannot be used: names the file, the row and the problem."""


@dataclass(frozen=True)
class OpsExport:
    """What `export_ops` did: the manifest it wrote and how many files it exported or found done."""

    dir: Path
    manifest: Path
    units: int  # unique units of the space
    rows: int  # rows of the manifest (more than `units` when the folder also holds another space's units)
    exported: int  # files written by this call
    kept: int  # files of this space already complete from an earlier call
    bytes: int  # size of all files the manifest lists
    seconds: float


@dataclass(frozen=True)
class _Row:
    file: str
    key: str
    input_shape: str
    op: str
    batch_size: int


# ---------------------------------------------------------------- small file helpers

def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file beside it and a rename: readers see old or new, never half."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _read_csv(path: Path, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (stripped, lower case) and (row number, cells) of each non-blank row; row 1 is the header."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RemoteError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RemoteError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
            else:
                rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise RemoteError(f"{path}: row {reader.line_num}: not valid CSV: {exc}") from None
    if header is None:
        raise RemoteError(f"{path}: empty file, expected a header row")
    if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
        raise RemoteError(f"{path}: columns must be separated by commas, got the header {header[0]!r}")
    seen = set()
    for name in header:
        if name in seen:
            raise RemoteError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)
    return header, rows


def _cells(path: Path, header: list[str], number: int, cells: list[str]) -> dict[str, str]:
    if len(cells) > len(header):
        raise RemoteError(f"{path}: row {number}: {len(cells)} cells, but the header has {len(header)} columns")
    return dict(zip(header, cells + [""] * (len(header) - len(cells))))


def _shape_text(batch_size: int, shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in (batch_size, *shape))


# ---------------------------------------------------------------- manifest

def read_manifest(path: str | os.PathLike[str]) -> dict[str, _Row]:
    """Rows of a manifest written by `export_ops`, by file; RemoteError names the first problem."""
    path = Path(path)
    header, rows = _read_csv(path, "manifest")
    if tuple(header) != MANIFEST_COLUMNS:
        raise RemoteError(f"{path}: not a manifest of `nas lut export-ops`: the header is {','.join(header)}, "
                          f"expected {','.join(MANIFEST_COLUMNS)}")
    out: dict[str, _Row] = {}
    keys: dict[str, int] = {}
    for number, cells in rows:
        row = _cells(path, header, number, cells)
        if not _FILE_NAME.fullmatch(Path(row["file"]).name) or Path(row["file"]).parent != Path(OPS):
            raise RemoteError(f"{path}: row {number}: file {row['file']!r} is not of the form {OPS}/u00001.onnx")
        if not row["key"]:
            raise RemoteError(f"{path}: row {number}: empty key")
        if row["file"] in out:
            raise RemoteError(f"{path}: row {number}: file {row['file']!r} is listed twice")
        if row["key"] in keys:
            raise RemoteError(f"{path}: row {number}: key {row['key']!r} is already in row {keys[row['key']]}")
        if not row["batch_size"].isdigit() or int(row["batch_size"]) < 1:
            raise RemoteError(f"{path}: row {number}: batch_size {row['batch_size']!r} is not a positive integer")
        keys[row["key"]] = number
        out[row["file"]] = _Row(row["file"], row["key"], row["input_shape"], row["op"], int(row["batch_size"]))
    sizes = {r.batch_size for r in out.values()}
    if len(sizes) > 1:
        raise RemoteError(f"{path}: mixes batch sizes {sorted(sizes)}")
    return out


def _write_manifest(path: Path, rows: Iterable[_Row]) -> None:
    ordered = sorted(rows, key=lambda r: r.file)
    _write_atomic(path, _csv_text(MANIFEST_COLUMNS, ((r.file, r.key, r.input_shape, r.op, r.batch_size)
                                                      for r in ordered)))


# ---------------------------------------------------------------- export

def _file_key(path: Path) -> str | None:
    """The key an exported file carries in its metadata (None when it has none or cannot be read)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a damaged or foreign file: export it again
        return None
    return next((p.value for p in model.metadata_props if p.key == KEY_METADATA), None)


def _export_unit(unit: Unit, space: SearchSpace, target: Path, batch_size: int) -> None:
    """One unit as a self-contained ONNX file at `target` (atomically), its key in the metadata."""
    import onnx

    module = build_unit(unit.key, space.norm)
    tmp = target.with_name(f".{target.name}.export")
    try:
        # The TorchScript-based exporter is ~20x faster per block; dynamo where it is gone or fails.
        with warnings.catch_warnings():
            # Shapes are static here, so a Python branch on a traced shape is exactly what we want.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            try:
                export_onnx(module, unit.key.input_shape, tmp, batch_size, dynamo=False)
            except LatencyError:
                export_onnx(module, unit.key.input_shape, tmp, batch_size, dynamo=True)
        model = onnx.load(str(tmp))
        for k, v in ((KEY_METADATA, unit.text), ("nas_input_shape", _shape_text(batch_size, unit.key.input_shape))):
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        model.doc_string = f"nas unit: {unit.text}"
        data = model.SerializeToString()
        write_bytes_atomic(target, data)
    except LatencyError as exc:
        raise RemoteError(f"cannot export unit '{unit.text}': {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def sampled_units(space: SearchSpace, samples: int, seed: int = 0) -> dict[str, Unit]:
    """The units of `samples` random networks only: a whole large space can be tens of GB of ONNX."""
    import random

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise RemoteError(f"samples must be a positive integer, got {samples!r}")
    rng = random.Random(seed)
    found: dict[str, Unit] = {}
    for _ in range(samples):
        for unit in plan(space, sample(space, rng)).units:
            found.setdefault(unit.text, unit)
    return found


def export_ops(space: SearchSpace, out_dir: str | os.PathLike[str], batch_size: int = 1,
               progress: Callable[[Iterable], Iterable] | None = None,
               samples: int | None = None, seed: int = 0) -> OpsExport:
    """Write every unique unit of `space` as `out_dir/ops/uNNNNN.onnx`, with `manifest.csv`, a results
    template and a README; return what was done.

    Resumable: a unit whose file is already complete is not exported again
    (files are renamed into place only when whole, and each carries its key
    in its ONNX metadata). The manifest is replaced atomically after every
    `SAVE_EVERY` new files and at the end; rows of another space exported to
    the same folder are kept, numbering continues after them.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RemoteError(f"batch size must be a positive integer, got {batch_size!r}")
    start = time.perf_counter()
    root = Path(out_dir)
    ops = root / OPS
    try:
        ops.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RemoteError(f"{ops}: cannot create the folder: {exc.strerror or exc}") from None
    for stale in ops.iterdir():  # temp files of an export that was killed
        if stale.name.startswith(".") and stale.name.endswith((".tmp", ".export")):
            with contextlib.suppress(OSError):
                stale.unlink()
    manifest = root / MANIFEST
    rows = read_manifest(manifest) if manifest.exists() else {}
    if rows and next(iter(rows.values())).batch_size != batch_size:
        raise RemoteError(f"{manifest}: exported with batch size {next(iter(rows.values())).batch_size}, "
                          f"not {batch_size}; export to another folder")
    by_key = {r.key: r for r in rows.values()}
    units = unique_units(space) if samples is None else sampled_units(space, samples, seed)
    kept = 0
    todo: list[tuple[Unit, _Row]] = []
    number = max((int(_FILE_NAME.fullmatch(Path(f).name).group(1)) for f in rows), default=0)
    for text, unit in units.items():
        row = by_key.get(text)
        if row is not None and (root / row.file).is_file():
            kept += 1
            continue
        if row is None:
            number += 1
            row = _Row(f"{OPS}/u{number:05d}.onnx", text, _shape_text(batch_size, unit.key.input_shape),
                       unit.key.config.op, batch_size)
            # A file not yet in the manifest may be complete from a killed run: keep it if it holds this key.
            if (root / row.file).is_file() and _file_key(root / row.file) == text:
                rows[row.file] = row
                kept += 1
                continue
        todo.append((unit, row))
    done = 0
    for unit, row in progress(todo) if progress else todo:
        _export_unit(unit, space, root / row.file, batch_size)
        rows[row.file] = row
        done += 1
        if done % SAVE_EVERY == 0:
            _write_manifest(manifest, rows.values())
    _write_manifest(manifest, rows.values())
    _write_template(root / TEMPLATE, rows.values())
    _write_atomic(root / README, _readme(space, len(rows), batch_size))
    size = sum((root / f).stat().st_size for f in rows)
    return OpsExport(dir=root, manifest=manifest, units=len(units), rows=len(rows), exported=done, kept=kept,
                     bytes=size, seconds=time.perf_counter() - start)


def _write_template(path: Path, rows: Iterable[_Row]) -> None:
    """`file,key,ms` with ms empty; values a user already typed into an earlier template are kept."""
    filled: dict[str, dict[str, str]] = {}
    extra: list[str] = []
    if path.exists():
        header, old = _read_csv(path, "results template")
        if "key" not in header:
            raise RemoteError(f"{path}: has no 'key' column; move it away and export again to get a fresh template")
        extra = [c for c in ("spread_ms", "runs") if c in header]
        for number, cells in old:
            row = _cells(path, header, number, cells)
            filled[row["key"]] = row
    columns = ["file", "key", "ms", *extra]
    ordered = sorted(rows, key=lambda r: r.file)
    _write_atomic(path, _csv_text(columns, ([r.file, r.key] + [filled.get(r.key, {}).get(c, "") for c in columns[2:]]
                                            for r in ordered)))


def _readme(space: SearchSpace, n: int, batch_size: int) -> str:
    return f"""Latency units to time on a remote device (written by `nas lut export-ops`, space {space.name})

ops/uNNNNN.onnx   {n} networks, one unit each: ONNX opset 18, float32, NCHW, one input of the
                  static shape in manifest.csv (batch size {batch_size}), random weights.
manifest.csv      file,key,input_shape,op,batch_size: which unit key each file holds (each file
                  also names its key in its ONNX metadata, under "{KEY_METADATA}").
results_template.csv
                  file,key,ms: copy it to results.csv and fill in one number per row.

How to time
  Time every file alone, on the device, with the runtime and thread count you will deploy with,
  after a few warm-up runs, and write the MEDIAN latency of one inference in milliseconds into
  the ms column (the average if the tool gives no median). Optional columns: spread_ms (the
  interquartile range or standard deviation, ms) and runs (timed runs). Rows can also be named
  by file alone (drop the key column) as long as manifest.csv stays beside results.csv.
  Examples:
    onnxruntime_perf_test -e cpu -m times -r 200 -x 1 -I ops/u00001.onnx
        ONNX Runtime's own tool; prints the average and percentiles (P50) in seconds.
    benchmark_model --graph=u00001.tflite --num_threads=1 --num_runs=200
        TensorFlow Lite, after converting each file (e.g. with onnx2tf); prints microseconds.

Then, on the machine with this toolkit:
  nas lut import results.csv --device "Pixel 8 CPU" --backend tflite --threads 1
  nas lut show <the table it wrote> --space <your space>.yaml
"""


# ---------------------------------------------------------------- import

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


def _read_results(path: Path, manifest: dict[str, _Row] | None, manifest_path: Path) -> dict[str, Entry]:
    header, rows = _read_csv(path, "results")
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
        row = _cells(path, header, number, cells)
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
