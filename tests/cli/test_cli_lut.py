"""`nas lut build/show/validate` on a tiny space, with real measurements (kept small and fast)."""
from __future__ import annotations

import json

from nas.cli import main
from nas.space import load_space, unique_units

TINY = """
name: tiny
resolution: 32
num_classes: 10
stem: {out: 8}
stages:
  - {stride: 2, depth: [1, 2], width: 16, block: {op: inverted_residual, kernel: [3, 5], expand: 2}}
head: {pool: avg}
"""


def test_build_show_validate_a_small_space(write_yaml, tmp_path, capsys) -> None:
    space_file = write_yaml(TINY)
    lut = tmp_path / "tiny.json"
    assert main(["lut", "build", "--space", str(space_file), "--threads", "1", "--out", str(lut),
                 "--fit", "4", "--quiet"]) == 0
    out, err = capsys.readouterr()
    units = unique_units(load_space(space_file))
    assert out == f"wrote {lut}: {len(units)} entries\n"
    assert f"tiny: {len(units)} unique units, 0 already in {lut}, measuring {len(units)}" in err
    table = json.loads(lut.read_text())
    assert set(table["entries"]) == set(units)
    assert all(e["ms"] > 0 and e["runs"] >= 1 for e in table["entries"].values())
    assert table["correction"]["n"] == 4

    assert main(["lut", "show", str(lut), "--space", str(space_file), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["entries"] == len(units)
    assert shown["coverage"] == {"space": str(space_file), "units": len(units), "covered": len(units), "fraction": 1.0}

    # A second build finds everything in the table and measures nothing.
    assert main(["lut", "build", "--space", str(space_file), "--threads", "1", "--out", str(lut), "--quiet"]) == 0
    assert f"{len(units)} already in {lut}, measuring 0" in capsys.readouterr().err

    assert main(["lut", "validate", "--space", str(space_file), "--threads", "1", "--lut", str(lut),
                 "--samples", "3", "--passes", "1", "--no-measure", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 3 and 0 <= report["within_10pct"] <= 1 and report["mape"] >= 0
    assert {"spearman", "kendall", "worst", "correction"} <= set(report)


def test_bad_profile_options_exit_2(write_yaml, capsys) -> None:
    space_file = write_yaml(TINY)
    assert main(["lut", "build", "--space", str(space_file), "--backend", "tpu"]) == 2
    assert capsys.readouterr().err == ("error: unknown backend 'tpu'; choose one of torch, torchscript, "
                                       "onnxruntime, cuda\n")
    assert main(["lut", "build", "--space", str(space_file), "--threads", "0"]) == 2
    assert capsys.readouterr().err == "error: threads must be a positive integer, got 0\n"
    assert main(["lut", "build", "--space", str(space_file), "--batch-size", "-1"]) == 2
    assert capsys.readouterr().err == "error: batch_size must be a positive integer, got -1\n"
