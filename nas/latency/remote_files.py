"""The files of a remote-device round trip: the manifest, the results template and CSV reading.

`nas lut export-ops` (`nas.latency.remote`) writes them; `nas lut import`
(`nas.latency.remote_import`) reads them back. Every problem is a
`RemoteError` that names the file, the row and what was expected.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from nas.errors import NasError
from proxies.atomic import write_bytes_atomic

MANIFEST = "manifest.csv"
TEMPLATE = "results_template.csv"
README = "README.txt"
OPS = "ops"
MANIFEST_COLUMNS = ("file", "key", "input_shape", "op", "batch_size")
RESULT_COLUMNS = ("file", "key", "ms", "spread_ms", "runs")
KEY_METADATA = "nas_key"  # every exported file names its own key in the ONNX metadata
FILE_NAME = re.compile(r"u(\d+)\.onnx")


class RemoteError(NasError):
    """An export folder, a manifest or a results file cannot be used: names the file, the row and the problem."""


@dataclass(frozen=True)
class ManifestRow:
    """One row of manifest.csv: an exported file and the unit key it holds."""

    file: str
    key: str
    input_shape: str
    op: str
    batch_size: int


# ---------------------------------------------------------------- small file helpers

def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file beside it and a rename: readers see old or new, never half."""
    write_bytes_atomic(path, text.encode("utf-8"))


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text with `header` and `rows`, one line per row ending in "\n"."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def read_csv(path: Path, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
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


def row_cells(path: Path, header: list[str], number: int, cells: list[str]) -> dict[str, str]:
    """One row by column name, short rows padded with empty cells; too many cells is an error."""
    if len(cells) > len(header):
        raise RemoteError(f"{path}: row {number}: {len(cells)} cells, but the header has {len(header)} columns")
    return dict(zip(header, cells + [""] * (len(header) - len(cells))))


def shape_text(batch_size: int, shape: Sequence[int]) -> str:
    """`1x16x56x56`: the batch size and the (C, H, W) shape as the manifest writes them."""
    return "x".join(str(d) for d in (batch_size, *shape))


# ---------------------------------------------------------------- manifest

def read_manifest(path: str | os.PathLike[str]) -> dict[str, ManifestRow]:
    """Rows of a manifest written by `export_ops`, by file; RemoteError names the first problem."""
    path = Path(path)
    header, rows = read_csv(path, "manifest")
    if tuple(header) != MANIFEST_COLUMNS:
        raise RemoteError(f"{path}: not a manifest of `nas lut export-ops`: the header is {','.join(header)}, "
                          f"expected {','.join(MANIFEST_COLUMNS)}")
    out: dict[str, ManifestRow] = {}
    keys: dict[str, int] = {}
    for number, cells in rows:
        row = row_cells(path, header, number, cells)
        if not FILE_NAME.fullmatch(Path(row["file"]).name) or Path(row["file"]).parent != Path(OPS):
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
        out[row["file"]] = ManifestRow(row["file"], row["key"], row["input_shape"], row["op"], int(row["batch_size"]))
    sizes = {r.batch_size for r in out.values()}
    if len(sizes) > 1:
        raise RemoteError(f"{path}: mixes batch sizes {sorted(sizes)}")
    return out


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Replace manifest.csv atomically with `rows`, sorted by file."""
    ordered = sorted(rows, key=lambda r: r.file)
    write_text_atomic(path, csv_text(MANIFEST_COLUMNS, ((r.file, r.key, r.input_shape, r.op, r.batch_size)
                                                      for r in ordered)))



def write_template(path: Path, rows: Iterable[ManifestRow]) -> None:
    """`file,key,ms` with ms empty; values a user already typed into an earlier template are kept."""
    filled: dict[str, dict[str, str]] = {}
    extra: list[str] = []
    if path.exists():
        header, old = read_csv(path, "results template")
        if "key" not in header:
            raise RemoteError(f"{path}: has no 'key' column; move it away and export again to get a fresh template")
        extra = [c for c in ("spread_ms", "runs") if c in header]
        for number, cells in old:
            row = row_cells(path, header, number, cells)
            filled[row["key"]] = row
    columns = ["file", "key", "ms", *extra]
    ordered = sorted(rows, key=lambda r: r.file)
    write_text_atomic(path, csv_text(columns, ([r.file, r.key] + [filled.get(r.key, {}).get(c, "") for c in columns[2:]]
                                            for r in ordered)))

