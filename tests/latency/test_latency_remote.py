"""Remote devices: `nas lut export-ops` writes each unit as ONNX with a manifest; `nas lut import` reads timings."""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import nas.latency.remote as remote
from nas.cli import main
from nas.latency import LatencyModel, MissingEntryError
from nas.latency import RemoteError, export_ops, import_results, remote_profile
from nas.space import load_space, plan, sample, unique_units, write_fixed
from proxies.latency import DeviceProfile, LatencyTable

TINY = """
name: tiny
resolution: 32
num_classes: 10
stem: {out: 8, kernel: 3, stride: 2, act: relu}
stages:
  - {stride: 1, depth: 1, width: [8, 16], block: {op: inverted_residual, kernel: [3, 5], expand: 2}}
  - {stride: 2, depth: [1, 2], width: 16, block: {op: [sandglass, inverted_residual], expand: 2, se: [false, true]}}
head: {pool: avg}
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """The tiny space exported once for the module: (space, export dir, result, modules built by key)."""
    root = tmp_path_factory.mktemp("remote")
    (root / "tiny.yaml").write_text(TINY, encoding="utf-8")
    space = load_space(str(root / "tiny.yaml"))
    built: dict[str, torch.nn.Module] = {}
    real = remote.build_unit

    def capture(key, norm):
        module = real(key, norm)
        built[_text(key)] = module
        return module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(remote, "build_unit", capture)
        result = export_ops(space, root / "out")
    return space, root / "out", result, built


def _text(key) -> str:
    from nas.ops import get_op

    return get_op(key.config.op).key_text(key)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def out(exported, tmp_path: Path) -> Path:
    """A private copy of the export folder, free to edit."""
    return Path(shutil.copytree(exported[1], tmp_path / "out"))


@pytest.fixture
def filled(out: Path) -> tuple[Path, dict[str, float]]:
    """results.csv beside the manifest with made-up timings: (path, key -> ms)."""
    rows = read_rows(out / "results_template.csv")
    ms = {r["key"]: round(0.125 * (i + 1), 3) for i, r in enumerate(rows)}
    return write_rows(out / "results.csv", ["key", "ms"], [[k, v] for k, v in ms.items()]), ms


# ---------------------------------------------------------------- export

def test_export_writes_one_file_per_unit_with_a_manifest(exported):
    space, out, result, _ = exported
    units = unique_units(space)
    rows = read_rows(out / "manifest.csv")
    assert list(rows[0]) == ["file", "key", "input_shape", "op", "batch_size"]
    assert len(rows) == len(units) == result.units == result.rows == result.exported == 19 and result.kept == 0
    assert [r["file"] for r in rows] == [f"ops/u{i:05d}.onnx" for i in range(1, 20)]
    assert {r["key"] for r in rows} == set(units)
    for r in rows:
        unit = units[r["key"]]
        assert r["input_shape"] == "x".join(map(str, (1, *unit.key.input_shape)))
        assert (r["op"], r["batch_size"]) == (unit.key.config.op, "1")
        assert (out / r["file"]).is_file()
    assert sorted(p.name for p in (out / "ops").iterdir()) == [f"u{i:05d}.onnx" for i in range(1, 20)]
    template = read_rows(out / "results_template.csv")
    assert [(t["file"], t["key"], t["ms"]) for t in template] == [(r["file"], r["key"], "") for r in rows]
    readme = (out / "README.txt").read_text()
    assert "onnxruntime_perf_test" in readme and "benchmark_model" in readme and "MEDIAN" in readme


@pytest.mark.parametrize("op", ["sandglass", "classifier"])
def test_exported_file_runs_in_onnxruntime_like_the_torch_unit(exported, op):
    _, out, _, built = exported
    rows = read_rows(out / "manifest.csv")
    row = next(r for r in rows if r["op"] == op and (op == "classifier" or " se=1 " in r["key"]))
    model = onnx.load(str(out / row["file"]))
    assert {p.key: p.value for p in model.metadata_props}["nas_key"] == row["key"]
    session = ort.InferenceSession(str(out / row["file"]), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    shape = [int(d) for d in row["input_shape"].split("x")]
    assert inp.shape == shape
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    (got,) = session.run(None, {inp.name: x.numpy()})
    with torch.no_grad():
        want = built[row["key"]].eval()(x).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_rerun_exports_nothing_and_keeps_filled_in_values(exported, out: Path):
    space = exported[0]
    rows = read_rows(out / "results_template.csv")
    write_rows(out / "results_template.csv", ["file", "key", "ms"],
               [[r["file"], r["key"], "1.5" if i == 0 else ""] for i, r in enumerate(rows)])
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "ops").iterdir()}
    manifest = (out / "manifest.csv").read_text()
    result = export_ops(space, out)
    assert (result.exported, result.kept, result.rows) == (0, 19, 19)
    assert {p: p.stat().st_mtime_ns for p in (out / "ops").iterdir()} == mtimes
    assert (out / "manifest.csv").read_text() == manifest
    assert [r["ms"] for r in read_rows(out / "results_template.csv")] == ["1.5"] + [""] * 18


def test_a_killed_export_resumes_from_its_complete_files(exported, out: Path):
    """Files written after the manifest's last save are kept when they hold the expected key."""
    space = exported[0]
    lines = (out / "manifest.csv").read_text().splitlines(keepends=True)
    (out / "manifest.csv").write_text("".join(lines[:-3]))  # the last 3 files never reached the manifest
    (out / "ops" / "u00002.onnx").unlink()  # and one listed file is gone
    (out / "ops" / ".u00019.onnx.export").write_bytes(b"half")  # a temp file of the killed export
    keep = (out / "ops" / "u00017.onnx").stat().st_mtime_ns
    result = export_ops(space, out)
    assert (result.exported, result.kept) == (1, 18)
    assert (out / "ops" / "u00017.onnx").stat().st_mtime_ns == keep
    assert not (out / "ops" / ".u00019.onnx.export").exists()
    assert (out / "manifest.csv").read_text().splitlines(keepends=True) == lines


def test_export_refuses_another_batch_size_in_the_same_folder(exported, out: Path):
    with pytest.raises(RemoteError) as info:
        export_ops(exported[0], out, batch_size=2)
    assert str(info.value) == f"{out / 'manifest.csv'}: exported with batch size 1, not 2; export to another folder"
    with pytest.raises(RemoteError, match="^batch size must be a positive integer, got 0$"):
        export_ops(exported[0], out, batch_size=0)


# ---------------------------------------------------------------- import

def test_import_makes_a_table_for_the_remote_device(exported, filled):
    space, out = exported[0], filled[0].parent
    path, ms = filled
    table = import_results(path, device="Pixel 8 CPU", backend="tflite", threads=4)
    p = table.profile
    assert (p.device, p.backend, p.threads, p.batch_size, p.torch_version, p.remote) == (
        "Pixel 8 CPU", "tflite", 4, 1, None, True)
    assert table.path == out / f"{p.id}.json" and p.id.startswith("tflite-t4-b1-fp32-")
    assert {k: e.ms for k, e in table.entries.items()} == ms
    assert LatencyTable.load(table.path).entries == table.entries
    model = LatencyModel(LatencyTable.load(table.path), measure_missing=False)
    for seed in range(3):
        arch = sample(space, seed)
        assert model.sum_ms(space, arch) == pytest.approx(sum(ms[u.text] for u in plan(space, arch).units))


def test_a_remote_table_is_never_measured_into(exported, filled):
    space = exported[0]
    table = import_results(filled[0], device="Pixel 8 CPU", backend="tflite")
    unit = next(iter(unique_units(space).values()))
    del table.entries[unit.text]
    with pytest.raises(MissingEntryError) as info:
        LatencyModel(table).unit_ms(unit, space)  # measuring here would record this machine's time
    assert str(info.value) == (
        f"{table.path}: no latency for unit '{unit.text}', and this table was imported from Pixel 8 CPU "
        f"(tflite): time the missing units there (`nas lut export-ops`) and import them again")


def test_arch_stats_reads_an_imported_table(exported, filled, tmp_path: Path, capsys: pytest.CaptureFixture):
    space, (path, ms) = exported[0], filled
    table = import_results(path, device="Pixel 8 CPU", backend="tflite")
    fixed = tmp_path / "arch.yaml"
    write_fixed(space, sample(space, 1), fixed)
    args = ["arch", "stats", str(fixed), "--json", "--lut", str(table.path)]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    expected = sum(ms[u.text] for u in plan(space, sample(space, 1)).units)
    assert info["predicted_latency_ms"] == pytest.approx(expected)
    assert info["latency_profile"] == table.profile.id
    # A unit missing from a remote table is an error (exit 2), never a local measurement.
    first = plan(space, sample(space, 1)).units[1].text
    del table.entries[first]
    table.save()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and first in err


def test_rows_named_by_file_with_spread_and_runs(out: Path):
    rows = read_rows(out / "manifest.csv")
    path = write_rows(out / "results.csv", ["file", "ms", "spread_ms", "runs"],
                      [[Path(r["file"]).name if i % 2 else r["file"], 1 + i, 0.01, 50] for i, r in enumerate(rows)])
    table = import_results(path, device="Jetson Orin", backend="ort-arm64", out=out / "orin.json")
    assert table.path == out / "orin.json"
    assert table.entries[rows[3]["key"]].ms == 4.0
    assert (table.entries[rows[3]["key"]].spread_ms, table.entries[rows[3]["key"]].runs) == (0.01, 50)


def test_cli_import_then_show_reports_full_coverage(exported, filled, capsys: pytest.CaptureFixture):
    path = filled[0]
    space_file = exported[0].file
    assert main(["lut", "import", str(path), "--device", "Pixel 8 CPU", "--backend", "tflite", "--threads", "4"]) == 0
    profile = remote_profile("Pixel 8 CPU", "tflite", threads=4)
    table = path.parent / f"{profile.id}.json"
    assert capsys.readouterr().out == f"wrote {table}: 19 entries, profile {profile.id}\n"
    assert main(["lut", "show", str(table), "--space", space_file]) == 0
    shown = capsys.readouterr().out
    assert f"coverage of {space_file}: 19/19 units (100.0%)" in shown
    assert "backend              tflite" in shown and "device               Pixel 8 CPU" in shown


def test_cli_export_ops(exported, tmp_path: Path, capsys: pytest.CaptureFixture):
    small = tmp_path / "small.yaml"
    small.write_text(TINY.replace("width: [8, 16]", "width: 8").replace("kernel: [3, 5]", "kernel: 3")
                     .replace("op: [sandglass, inverted_residual]", "op: sandglass")
                     .replace("se: [false, true]", "se: false").replace("depth: [1, 2]", "depth: 1"))
    x = tmp_path / "x"
    assert main(["lut", "export-ops", "--space", str(small), "--out", str(x), "--quiet"]) == 0
    captured = capsys.readouterr()
    n = len(unique_units(load_space(str(small))))
    size = sum(f.stat().st_size for f in (x / "ops").iterdir()) / 1e6
    assert captured.out == (f"wrote {x / 'manifest.csv'}: {n} files ({size:,.1f} MB) in {x / 'ops'}; time them on "
                            f"the device and fill in {x / 'results_template.csv'} (see {x / 'README.txt'})\n")
    assert captured.err.startswith(f"tiny: {n} unique units, 0 already exported, {n} exported in ")


def test_cli_import_error_exits_2(out: Path, capsys: pytest.CaptureFixture):
    path = write_rows(out / "results.csv", ["key", "ms"], [["op=nothing", 1.0]])
    assert main(["lut", "import", str(path), "--device", "Pixel 8 CPU", "--backend", "tflite"]) == 2
    assert capsys.readouterr().err == f"error: {path}: row 2: key 'op=nothing' is not in {out / 'manifest.csv'}\n"


def _bad(out: Path, header: list[str], rows: list[list[object]], **kwargs) -> str:
    path = write_rows(out / "results.csv", header, rows)
    with pytest.raises(RemoteError) as info:
        import_results(path, device=kwargs.pop("device", "Pixel 8 CPU"), backend=kwargs.pop("backend", "tflite"),
                       **kwargs)
    return str(info.value)


def test_bad_results_name_the_file_the_row_and_the_problem(out: Path):
    rows = read_rows(out / "manifest.csv")
    k0, k1, k2 = (r["key"] for r in rows[:3])
    p, m = out / "results.csv", out / "manifest.csv"
    assert _bad(out, ["key", "ms"], [[k0, 1], [k1, "fast"]]) == f"{p}: row 3: ms 'fast' is not a number"
    assert _bad(out, ["key", "ms"], [[k0, 0]]) == f"{p}: row 2: ms must be positive, got 0"
    assert _bad(out, ["key", "ms"], [[k0, "-1.5"]]) == f"{p}: row 2: ms must be positive, got -1.5"
    assert _bad(out, ["key", "ms"], [[k0, "nan"]]) == f"{p}: row 2: ms 'nan' is not a finite number"
    assert _bad(out, ["key", "ms"], [[k0, 1], [k1, ""], [k2, 2], [rows[3]["key"], " "]]) == (
        f"{p}: 2 of 4 rows have no ms (first: row 3); fill them in or delete the rows you did not time")
    assert _bad(out, ["key", "ms"], [[k0, 1], [k1, 2], [k0, 3]]) == f"{p}: row 4: key {k0!r} is already in row 2"
    assert _bad(out, ["key", "ms"], [["op=foo in=1x1x1", 1]]) == f"{p}: row 2: key 'op=foo in=1x1x1' is not in {m}"
    assert _bad(out, ["key", "ms"], [["", 1]]) == f"{p}: row 2: no key"
    assert _bad(out, ["file", "ms"], [["ops/u00099.onnx", 1]]) == f"{p}: row 2: file 'ops/u00099.onnx' is not in {m}"
    assert _bad(out, ["file", "key", "ms"], [["ops/u00001.onnx", k1, 1]]) == (
        f"{p}: row 2: file 'ops/u00001.onnx' holds key {k0!r} in {m}, not {k1!r}")
    assert _bad(out, ["key", "ms", "spread_ms"], [[k0, 1, -2]]) == f"{p}: row 2: spread_ms must not be negative, got -2"
    assert _bad(out, ["key", "ms", "runs"], [[k0, 1, "2.5"]]) == f"{p}: row 2: runs '2.5' is not a positive integer"
    assert _bad(out, ["key", "ms"], [[k0, 1, "x"]]) == f"{p}: row 2: 3 cells, but the header has 2 columns"


def test_bad_headers_and_files(out: Path, tmp_path: Path):
    p = out / "results.csv"
    assert _bad(out, ["key"], [["a"]]) == f"{p}: missing column 'ms' (the header has key)"
    assert _bad(out, ["ms"], [[1]]) == f"{p}: missing column 'key' (the header has ms)"
    assert _bad(out, ["key", "ms", "notes"], [["a", 1, ""]]) == (
        f"{p}: unknown column 'notes'; expected key (or file), ms, and optionally spread_ms, runs")
    assert _bad(out, ["key", "ms"], []) == f"{p}: no rows below the header"
    assert _bad(out, ["key;ms"], []) == f"{p}: columns must be separated by commas, got the header 'key;ms'"
    p.write_text("")
    with pytest.raises(RemoteError, match=f"^{p}: empty file, expected a header row$"):
        import_results(p, device="d", backend="tflite")
    missing = tmp_path / "nowhere" / "results.csv"
    with pytest.raises(RemoteError) as info:
        import_results(missing, device="d", backend="tflite")
    assert str(info.value) == f"{missing}: cannot read results: No such file or directory"
    lone = write_rows(tmp_path / "results.csv", ["file", "ms"], [["ops/u00001.onnx", 1]])
    with pytest.raises(RemoteError) as info:
        import_results(lone, device="d", backend="tflite")
    assert str(info.value) == (f"{lone}: rows are named by file, but there is no manifest.csv beside it to map "
                               f"files to keys (expected {tmp_path / 'manifest.csv'})")


def test_bad_device_settings(out: Path):
    rows = [[read_rows(out / "manifest.csv")[0]["key"], 1]]
    assert _bad(out, ["key", "ms"], rows, backend="torch") == (
        "backend 'torch' is a local backend; name the remote device's runtime otherwise (e.g. 'tflite', 'ort-mobile')")
    assert _bad(out, ["key", "ms"], rows, backend="tf lite") == (
        "remote device profile: a remote device's backend must be a short name (letters, digits, '.', '_', '+', "
        "'-'; at most 32) other than torch, torchscript, onnxruntime, cuda, got 'tf lite'")
    assert _bad(out, ["key", "ms"], rows, device=" ") == "the device name must be a non-empty string, got ' '"
    assert _bad(out, ["key", "ms"], rows, threads=0) == (
        "remote device profile: threads must be a positive integer, got 0")
    assert _bad(out, ["key", "ms"], rows, batch_size=8) == (
        f"batch size 8 does not match {out / 'manifest.csv'}, whose files were exported with batch size 1")


def test_remote_profiles_round_trip_and_stay_apart_from_local_ones():
    p = remote_profile("Pixel 8  CPU", "tflite", threads=4)
    assert p.device == "Pixel 8 CPU" and p.remote
    assert DeviceProfile.from_dict(p.to_dict()) == p
    local = DeviceProfile(backend="torch", device="Pixel 8 CPU", threads=4, batch_size=1, torch_version="2.13.0")
    assert not local.remote and local.id.startswith("torch-")
    with pytest.raises(ValueError, match="^unknown backend 'tflite'; choose one of"):
        dataclasses.replace(p, torch_version="2.13.0")
    with pytest.raises(ValueError, match="^a remote device's backend must be a short name"):
        dataclasses.replace(local, torch_version=None)


def test_export_only_the_units_of_sampled_networks(exported, tmp_path: Path):
    import random

    space = exported[0]
    result = export_ops(space, tmp_path / "some", samples=2, seed=5)
    rng = random.Random(5)
    wanted = {u.text for _ in range(2) for u in plan(space, sample(space, rng)).units}
    rows = read_rows(tmp_path / "some" / "manifest.csv")
    assert {r["key"] for r in rows} == wanted
    assert result.units == len(rows) < len(unique_units(space))
    with pytest.raises(RemoteError, match="^samples must be a positive integer, got 0$"):
        export_ops(space, tmp_path / "none", samples=0)
