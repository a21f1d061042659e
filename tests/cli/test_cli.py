"""The `nas` command: JSON outputs, sampling to a file, and the console entry's exit codes."""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from nas import __version__
from nas.cli import main
from nas.cost import CostModel
from nas.space import decisions, encode, load_space, log10_size, sample

from roots import ROOT
SPACES_DIR = ROOT / "search_spaces"
MOBILENET_V2 = SPACES_DIR / "reference" / "mobilenet_v2.yaml"
MOBILENET_V3 = SPACES_DIR / "mobilenet_v3.yaml"
SANDGLASS = SPACES_DIR / "sandglass.yaml"


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


@pytest.mark.parametrize("path, backbone, params, macs", [
    (MOBILENET_V3, "mobilenet_v3_large", 5_483_032, 216_589_760),
    (SANDGLASS, "mobilenext", 3_535_416, 311_342_592),
])
def test_space_show_json(capsys, path: Path, backbone: str, params: int, macs: int) -> None:
    info = run_json(capsys, "space", "show", str(path), "--json")
    space = load_space(path)
    assert set(info) == {"name", "file", "stages", "decisions", "log10_size", "backbone"}
    assert info["name"] == path.stem
    assert info["file"] == str(path)
    assert info["stages"] == [s.name for s in space.stages]
    assert info["decisions"] == [{"name": d.name, "choices": list(d.choices)} for d in decisions(space)]
    assert info["log10_size"] == round(log10_size(space), 4)
    assert info["log10_size"] > 15
    bb = info["backbone"]
    assert set(bb) == {"file", "resolution", "params", "macs", "flops"}
    assert Path(bb["file"]).resolve() == SPACES_DIR / "reference" / f"{backbone}.yaml"
    assert (bb["resolution"], bb["params"], bb["macs"]) == (224, params, macs)  # REFERENCE.md
    assert bb["flops"] == CostModel().cost(load_space(bb["file"])).flops


def test_space_show_mobilenet_v3_decisions(capsys) -> None:
    info = run_json(capsys, "space", "show", str(MOBILENET_V3), "--json")
    assert len(info["decisions"]) == 46
    assert info["decisions"][:3] == [
        {"name": "res", "choices": [128, 160, 192, 224]},
        {"name": "s2.depth", "choices": [2, 3, 4]},
        {"name": "s2.b0.kernel", "choices": [3, 5, 7]},
    ]
    assert {"name": "s4.b0.expand", "choices": [2.3, 2.5, 3, 4, 6]} in info["decisions"]


def test_space_show_text(capsys) -> None:
    assert main(["space", "show", str(MOBILENET_V3)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"mobilenet_v3 ({MOBILENET_V3}): 6 stages, 46 decisions, 10^20.81 architectures"
    assert lines[1].split() == ["res", "[128,", "160,", "192,", "224]"]
    assert lines[-1].startswith("backbone ") and "5,483,032 params, 216,589,760 MACs" in lines[-1]


def test_space_show_fixed_has_no_backbone(capsys) -> None:
    info = run_json(capsys, "space", "show", str(MOBILENET_V2), "--json")
    assert (info["decisions"], info["log10_size"], info["backbone"]) == ([], 0.0, None)


def test_arch_stats_json_mobilenet_v2(capsys) -> None:
    info = run_json(capsys, "arch", "stats", str(MOBILENET_V2), "--json", "--no-latency")
    assert set(info) == {"name", "file", "resolution", "params", "macs", "flops", "flops_by_operator", "blocks"}
    assert info["name"] == "mobilenet_v2"
    assert (info["resolution"], info["params"], info["macs"]) == (224, 3_504_872, 300_774_272)  # REFERENCE.md
    assert info["flops"] == sum(info["flops_by_operator"].values())
    blocks = info["blocks"]
    # stem conv, 17 inverted residuals, head conv, pool, classifier
    assert len(blocks) == 21
    assert [(b["stage"], b["op"]) for b in blocks[:2]] == [("stem", "conv_bn_act"), ("s1", "inverted_residual")]
    assert [b["op"] for b in blocks[-3:]] == ["conv_bn_act", "global_pool", "classifier"]
    for b in blocks:
        assert set(b) == {"stage", "index", "op", "key", "input_shape", "params", "macs", "flops"}
    assert sum(b["params"] for b in blocks) == info["params"]
    assert sum(b["macs"] for b in blocks) == info["macs"]
    assert sum(b["flops"] for b in blocks) == info["flops"]
    assert blocks[0]["input_shape"] == [3, 224, 224]
    assert blocks[0]["params"] == 3 * 32 * 9 + 2 * 32  # conv weights + BN affine
    assert blocks[-1]["params"] == 1280 * 1000 + 1000
    assert blocks[-1]["input_shape"] == [1280, 1, 1]


def test_arch_stats_text(capsys) -> None:
    assert main(["arch", "stats", str(MOBILENET_V2), "--no-latency"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mobilenet_v2: 3,504,872 params, 300,774,272 MACs (conv+linear), ")
    assert lines[0].endswith(" fvcore flops (all ops) at 224x224")
    assert len(lines) == 2 + 21


def table_level(path: Path) -> float:
    return json.loads(path.read_text())["reference"]["ms"]


def test_arch_stats_latency(capsys, tmp_path: Path) -> None:
    """Predicted latency measures the missing units into the table, then reads them back."""
    lut = tmp_path / "t.json"
    args = ["arch", "stats", str(MOBILENET_V2), "--json", "--threads", "1", "--lut", str(lut), "--measure"]
    info = run_json(capsys, *args)
    assert info["latency_profile"].startswith("torch-t1-b1-fp32-")
    assert info["latency_corrected"] is False  # no correction fitted yet: the plain sum
    assert info["predicted_latency_ms"] == pytest.approx(sum(b["latency_ms"] for b in info["blocks"]))
    assert all(b["latency_ms"] > 0 for b in info["blocks"])
    assert info["measured_latency_ms"] > 0 and info["measured_raw_ms"] > 0 and info["measured_pass_cv"] >= 0
    # The raw figure is the level figure times the machine's speed against the level, per group; the two
    # medians differ as far as the probe fails to follow the network (slope 0.54-0.74 on this host,
    # benchmarks/probe_tracking.py): once 1.91 against a speed of 1.22 in CI. Within 2x either way.
    ratio = info["measured_raw_ms"] / info["measured_latency_ms"] / info["machine_speed"]
    assert info["machine_speed"] > 0 and 0.5 <= ratio <= 2.0
    low, high = info["predicted_interval_ms"]
    assert low < info["predicted_latency_ms"] < high  # no correction: the entries' standard errors alone
    assert table_level(lut) > 0
    table = json.loads(lut.read_text())
    assert len(table["entries"]) == len({b["key"] for b in info["blocks"]})
    # A second run finds every unit in the table and predicts the same value.
    again = run_json(capsys, *args[:-1])
    assert again["predicted_latency_ms"] == info["predicted_latency_ms"]


def test_arch_sample_then_stats(capsys, tmp_path: Path) -> None:
    out = tmp_path / "x.yaml"
    assert main(["arch", "sample", str(MOBILENET_V3), "--seed", "1", "--out", str(out)]) == 0
    space = load_space(MOBILENET_V3)
    arch = sample(space, 1)
    assert capsys.readouterr() == (f"wrote {out}: {encode(space, arch)}\n", "")
    fixed = load_space(out)
    assert fixed.is_fixed and fixed.name == "mobilenet_v3-seed1"

    info = run_json(capsys, "arch", "stats", str(out), "--json", "--no-latency")
    cost = CostModel().cost(space, arch)
    assert (info["name"], info["resolution"]) == ("mobilenet_v3-seed1", arch["res"])
    assert (info["params"], info["macs"], info["flops"]) == (cost.params, cost.macs, cost.flops)
    assert [b["key"] for b in info["blocks"]] == [u.unit.text for u in cost.units]


def test_arch_sample_seed_is_deterministic(capsys, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    for path, seed in ((a, "2"), (b, "2"), (c, "3")):
        assert main(["arch", "sample", str(SANDGLASS), "--seed", seed, "--out", str(path)]) == 0
    capsys.readouterr()
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()


def test_arch_sample_requires_out(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["arch", "sample", str(MOBILENET_V3)])
    assert info.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"nas {__version__}\n"


def test_python_m_nas_help(capsys, monkeypatch) -> None:
    """`python -m nas --help` runs nas/__main__.py (in-process here)."""
    monkeypatch.setattr(sys, "argv", ["nas", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("nas", run_name="__main__")
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nas ")
    assert "{search,worker,report,export,train,supernet,space,arch,lut}" in out


def test_console_entry_exit_code(write_yaml) -> None:
    """The one real process: exit code 2, one line on stderr, nothing on stdout."""
    bad = write_yaml("name: tiny\nresolution: 32\nstem: {out: 8}\nstages: [{stride: 3, width: 8, depth: 1, "
                     "block: {op: dwsep}}]\nhead: {}\n")
    proc = subprocess.run([sys.executable, "-m", "nas", "space", "check", str(bad)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"error: {bad}: stages[0].stride: 3 is not 1 or 2\n"


def test_a_plugin_that_cannot_be_imported_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("NAS_PLUGINS", "no_such_plugin_module")
    assert main(["space", "check", str(SANDGLASS)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "error: $NAS_PLUGINS: cannot import 'no_such_plugin_module': No module named 'no_such_plugin_module'\n"


def test_plugins_are_imported_before_the_command_line_is_read() -> None:
    """An objective registered by a $NAS_PLUGINS module is in `nas search --help` (a fresh process, so the
    test's own registry stays as shipped)."""
    env = {**os.environ, "NAS_PLUGINS": "slow_objective",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, "-m", "nas", "search", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "sleepy" in proc.stdout
