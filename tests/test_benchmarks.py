"""The benchmarks stay runnable: every module imports as part of the `benchmarks` package (no sys.path
edits), the shared command line behaves, and the quickest benchmarks run end to end in quick mode."""
from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import benchmarks
from benchmarks import _common
from roots import ROOT

BENCHMARKS = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))
SOURCES = sorted((ROOT / "benchmarks").glob("*.py"))


def test_every_benchmark_is_found() -> None:
    assert {"cost_scoring", "latency_truth", "predict_speed", "proxy_correlation", "sampler_hypervolume",
            "search_speed", "search_targets"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_imports_and_has_a_quick_mode(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.main)
    assert isinstance(module.QUICK, dict) and module.QUICK, f"benchmarks/{name}.py: no quick-mode sizes"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_sys_path_edits(path: Path) -> None:
    assert "sys.path" not in path.read_text(encoding="utf-8"), \
        f"{path.name}: import through the installed packages, run as python -m benchmarks.{path.stem}"


def test_quick_replaces_defaults_but_not_given_options(capsys: pytest.CaptureFixture[str]) -> None:
    p = _common.parser("doc")
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--repeats", type=int, default=20)
    args = _common.parse(p, {"candidates": 3, "repeats": 2}, ["--quick", "--repeats", "7"])
    assert (args.candidates, args.repeats, args.space, args.seed) == (3, 7, _common.QUICK_SPACE, 0)
    assert _common.QUICK_NOTE in capsys.readouterr().out
    args = _common.parse(p, {"candidates": 3}, [])
    assert (args.candidates, args.space, args.quick) == (20, _common.DEFAULT_SPACE, False)


def test_write_json_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "out" / "figures.json"
    _common.write_json(target, {"a": 1})
    _common.write_json(target, {"b": Path("x")}, default=str)
    assert json.loads(target.read_text()) == {"b": "x"}
    assert [p.name for p in target.parent.iterdir()] == ["figures.json"]  # no temp file left behind


@pytest.mark.parametrize("name, keys", [
    ("predict_speed", {"space", "table", "warm", "candidates", "repeat_medians_ms", "median_ms"}),
    ("cost_scoring", {"space", "candidates", "torch_threads", "machine", "whole_model_fvcore_ms", "cold_score_ms",
                      "warm_score_ms", "plan_ms", "speedup_warm_vs_whole_model", "new_candidate_score_ms",
                      "new_candidate_unit_miss_rate", "cache_entries", "build_ms_with_init", "build_ms_without_init",
                      "median_params"}),
])
def test_quick_run_writes_its_figures(name: str, keys: set[str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"{name}.json"
    assert importlib.import_module(f"benchmarks.{name}").main(["--quick", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) == keys | {"quick"}
    assert figures["quick"] is True
    printed = capsys.readouterr().out
    assert printed.count(_common.QUICK_NOTE) == 2 and f"wrote {out}" in printed


def test_usage_names_the_module_command() -> None:
    """`--help` shows how a benchmark is run (`python -m benchmarks.<name>`), not a file path."""
    import subprocess
    import sys

    from roots import ROOT

    out = subprocess.run([sys.executable, "-m", "benchmarks.predict_speed", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: python -m benchmarks.predict_speed [-h]")
