"""Latency tables for devices this machine cannot run: export the units (here), import the timings.

`export_ops` writes each unique unit of a space as one ONNX file with a
manifest of keys, so a user can time the files on a phone or a board with
that device's own benchmark tool (onnxruntime_perf_test, TFLite's
benchmark_model after a conversion, a vendor SDK). `import_results`
(`nas.latency.remote_import`) turns the filled-in CSV into a latency table
whose profile names that device and runtime. Such a *remote* profile has no
torch version, never equals a local one, and so its table is only ever read,
never measured into. The files' formats are `nas.latency.remote_files`.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from nas.builder import build_unit
from nas.latency.remote_files import (FILE_NAME, KEY_METADATA, MANIFEST, OPS, README, TEMPLATE, ManifestRow,
                                      RemoteError, read_manifest, shape_text, write_manifest, write_template,
                                      write_text_atomic)
from nas.space import SearchSpace, Unit, plan, sample, unique_units
from proxies.atomic import write_bytes_atomic
from proxies.latency import LatencyError
from proxies.onnx_export import export_onnx

SAVE_EVERY = 100  # the manifest is rewritten after this many new files (a killed export redoes at most these)


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
        for k, v in ((KEY_METADATA, unit.text), ("nas_input_shape", shape_text(batch_size, unit.key.input_shape))):
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


def _open_folder(root: Path) -> None:
    """Create `root/ops` and remove the temp files of an export that was killed."""
    ops = root / OPS
    try:
        ops.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RemoteError(f"{ops}: cannot create the folder: {exc.strerror or exc}") from None
    for stale in ops.iterdir():  # temp files of an export that was killed
        if stale.name.startswith(".") and stale.name.endswith((".tmp", ".export")):
            with contextlib.suppress(OSError):
                stale.unlink()


def _todo(root: Path, rows: dict[str, ManifestRow], units: dict[str, Unit],
          batch_size: int) -> tuple[list[tuple[Unit, ManifestRow]], int]:
    """The units still to export, each with its manifest row (new rows numbered after the last), and how
    many are complete already; a complete file a killed run left outside the manifest joins `rows`."""
    by_key = {r.key: r for r in rows.values()}
    kept = 0
    todo: list[tuple[Unit, ManifestRow]] = []
    number = max((int(FILE_NAME.fullmatch(Path(f).name).group(1)) for f in rows), default=0)
    for text, unit in units.items():
        row = by_key.get(text)
        if row is not None and (root / row.file).is_file():
            kept += 1
            continue
        if row is None:
            number += 1
            row = ManifestRow(f"{OPS}/u{number:05d}.onnx", text, shape_text(batch_size, unit.key.input_shape),
                              unit.key.config.op, batch_size)
            # A file not yet in the manifest may be complete from a killed run: keep it if it holds this key.
            if (root / row.file).is_file() and _file_key(root / row.file) == text:
                rows[row.file] = row
                kept += 1
                continue
        todo.append((unit, row))
    return todo, kept


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
    _open_folder(root)
    manifest = root / MANIFEST
    rows = read_manifest(manifest) if manifest.exists() else {}
    if rows and next(iter(rows.values())).batch_size != batch_size:
        raise RemoteError(f"{manifest}: exported with batch size {next(iter(rows.values())).batch_size}, "
                          f"not {batch_size}; export to another folder")
    units = unique_units(space) if samples is None else sampled_units(space, samples, seed)
    todo, kept = _todo(root, rows, units, batch_size)
    done = 0
    for unit, row in progress(todo) if progress else todo:
        _export_unit(unit, space, root / row.file, batch_size)
        rows[row.file] = row
        done += 1
        if done % SAVE_EVERY == 0:
            write_manifest(manifest, rows.values())
    write_manifest(manifest, rows.values())
    write_template(root / TEMPLATE, rows.values())
    write_text_atomic(root / README, _readme(space, len(rows), batch_size))
    size = sum((root / f).stat().st_size for f in rows)
    return OpsExport(dir=root, manifest=manifest, units=len(units), rows=len(rows), exported=done, kept=kept,
                     bytes=size, seconds=time.perf_counter() - start)


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

