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
    ("subnet_eval_speed", {"space", "subnets", "torch_threads", "calib_images", "load_average", "supernet_build_s",
                           "recalibrate_and_evaluate_ms", "recalibrate_and_evaluate_max_ms", "evaluate_only_ms",
                           "under_1s"}),
    ("supernet_ranking", {"space", "protocol", "seeds", "timing", "table", "subnets", "baseline_scores"}),
    ("probe_tracking", {"space", "backend", "threads", "rounds", "probe_ms_range", "heavy_probe_ms_range", "networks"}),
    ("network_repeatability", {"space", "backend", "threads", "networks", "repeats", "settings"}),
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


def test_distributed_leg_commands() -> None:
    """benchmarks.distributed drives `nas search`: one process on the default storage, --workers N on
    PostgreSQL, each leg its own study."""
    import sys

    from benchmarks import distributed

    args = _common.parse(distributed.build_parser(), distributed.QUICK, ["--quick", "--target", "30ms"])
    common = ["--objective", "naswot", "--n-trials", "4", "--run-dir", "/w/naswot-postgres-2", "--no-measure",
              "--quiet", "--fit", "0", "--threads", "1", "--seed", "0"]
    head = [sys.executable, "-m", "nas", "search", "--space", _common.QUICK_SPACE, "--target-latency", "30ms"]
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/nasbench"
    assert distributed.command(args, "naswot", "postgres", 2, url, Path("/w/naswot-postgres-2")) == [
        *head, *common, "--workers", "2", "--storage", url, "--study-name", "naswot-postgres-2"]
    cmd = distributed.command(args, "macs", "default", 1, None, Path("/w/macs-default-1"))
    assert cmd[cmd.index("--n-trials") + 1] == "6" and "--workers" not in cmd and "--storage" not in cmd


def test_distributed_speedups_and_bad_storages(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import distributed

    def leg(storage: str, workers: int, rate: float) -> dict:
        return {"objective": "naswot", "storage": storage, "workers": workers, "trials_per_s": rate}

    legs = {"naswot/default/1": leg("default", 1, 3.0), "naswot/postgres/1": leg("postgres", 1, 2.0),
            "naswot/postgres/2": leg("postgres", 2, 3.5), "naswot/postgres/4": leg("postgres", 4, 5.0)}
    assert distributed.speedups(legs) == {"naswot/postgres/2": 1.75, "naswot/postgres/4": 2.5}
    with pytest.raises(SystemExit) as exit_:
        distributed.main(["--quick", "--storages", "default,mysql"])
    assert exit_.value.code == 2
    assert "--storages: 'default,mysql'; allowed: default, postgres" in capsys.readouterr().err


def test_distributed_quick_single_process_leg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The leg that runs without --workers: the real command, its trials in the study, and the per-trial
    storage time; the caller's NAS_LUT_DIR is given back."""
    import os

    from benchmarks import distributed

    before = os.environ.get("NAS_LUT_DIR")
    out = tmp_path / "distributed.json"
    assert distributed.main(["--quick", "--storages", "default", "--objectives", "macs", "--json", str(out)]) == 0
    assert os.environ.get("NAS_LUT_DIR") == before
    figures = json.loads(out.read_text())
    assert set(figures) == {"space", "target", "machine", "optuna", "postgres", "legs", "speedup_over_one_worker",
                            "storage_ms_per_trial", "quick"}
    leg = figures["legs"]["macs/default/1"]
    assert (leg["trials"], leg["complete_in_study"], leg["workers"]) == (6, 6, 1)
    assert leg["trials_per_s"] > 0 and leg["wall_s"] >= leg["loop_s"] > 0
    assert set(figures["storage_ms_per_trial"]) == {"journal"} and figures["postgres"] is None
    assert capsys.readouterr().out.count(_common.QUICK_NOTE) == 2


def test_supernet_ranking_task_holds_out_everything_it_does_not_train_on() -> None:
    """The shrunk digits task: per class the asked count to train on, every other image held out, and the
    same images in the same order at both resolutions."""
    from collections import Counter

    import torch

    from benchmarks.supernet_ranking import task
    from nas.data import prepared
    from nas.space import load_space

    space = load_space(ROOT / "search_spaces" / "sandglass32.yaml")
    data = task(space, 7)
    full = prepared("digits", 24, 3)
    assert sorted(data) == [24, 32]
    assert data[24].y_train.bincount().tolist() == [7] * 10
    assert len(data[24].y_train) + len(data[24].y_test) == len(full.y_train) + len(full.y_test)
    for a, b in ((data[24].y_train, data[32].y_train), (data[24].y_test, data[32].y_test)):
        assert torch.equal(a, b)
    # every image once: the training and held-out images together are the full set, none dropped or repeated
    def images(*xs: torch.Tensor) -> Counter:
        return Counter(x.numpy().tobytes() for t in xs for x in t)

    assert images(data[24].x_train, data[24].x_test) == images(full.x_train, full.x_test)


def test_supernet_ranking_picks_one_subnet_per_macs_bin() -> None:
    from benchmarks.supernet_ranking import pick_subnets
    from nas.cost import CostModel
    from nas.space import load_space

    space = load_space(_common.QUICK_SPACE)
    subnets = pick_subnets(space, 5, 60, 0, CostModel())
    macs = [s["macs"] for s in subnets]
    assert macs == sorted(macs) and len({s["arch"] for s in subnets}) == 5
    assert subnets == pick_subnets(space, 5, 60, 0, CostModel())  # the same seed, the same subnets
    with pytest.raises(SystemExit, match="--pool 3: only"):
        pick_subnets(space, 5, 3, 0, CostModel())


def test_supernet_ranking_noise_floor_and_run_cache(tmp_path: Path) -> None:
    """One seed against the mean of the others: 1 when every seed orders the subnets alike; the run cache
    skips done runs on a rerun and refuses a file made under another protocol."""
    import numpy as np

    from benchmarks.supernet_ranking import RunCache, noise_tau

    runs = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
    assert noise_tau(runs, np.arange(3)) == pytest.approx(1.0)
    assert noise_tau(runs[:, [0, 1]] * [1, -1], np.arange(3)) == pytest.approx(-1.0)
    path = tmp_path / "runs.json"
    calls = []
    make = lambda: calls.append(1) or {"top1": 0.5}  # noqa: E731
    assert RunCache(str(path), {"epochs": 2}).get("a", 0, make) == {"top1": 0.5}
    assert RunCache(str(path), {"epochs": 2}).get("a", 0, make) == {"top1": 0.5} and len(calls) == 1
    with pytest.raises(SystemExit, match="made under another protocol"):
        RunCache(str(path), {"epochs": 3})


def test_probe_tracking_spread_after_rescaling() -> None:
    """A network that runs exactly as the probe does has no spread left after full rescaling, and its
    whole spread before it; one that ignores the probe keeps its spread at every exponent."""
    from benchmarks.probe_tracking import log_sd_after_rescaling

    import numpy as np

    probe = np.array([10.0, 12.0, 15.0, 20.0])
    follows = probe * 3
    assert log_sd_after_rescaling(probe, follows, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert log_sd_after_rescaling(probe, follows, 0.0) == pytest.approx(float(np.std(np.log(probe), ddof=1)))
    steady = np.array([5.0, 5.5, 5.0, 5.5])
    assert log_sd_after_rescaling(probe, steady, 0.0) < log_sd_after_rescaling(probe, steady, 1.0)


def test_network_repeatability_settings_and_deviation() -> None:
    """Settings parse as TRIES:PASSES pairs and refuse zero or junk; each run's deviation is taken from
    the per-network median over all runs, so a run equal to it deviates by nothing."""
    import argparse

    import numpy as np

    from benchmarks.network_repeatability import deviation_from_consensus, settings_arg

    assert settings_arg("3:3,1:7") == [(3, 3), (1, 7)]
    for bad in ("0:3", "3", "a:b", "3:0", "3:3,1:3,3:3"):
        with pytest.raises(argparse.ArgumentTypeError, match=bad.split(",")[-1]):
            settings_arg(bad)
    runs = np.array([[10.0, 20.0], [11.0, 20.0], [10.0, 40.0]])
    deviation = deviation_from_consensus(runs)
    assert deviation[0] == pytest.approx([0.0, 0.0])
    assert deviation[1, 0] == pytest.approx(np.log(1.1)) and deviation[2, 1] == pytest.approx(np.log(2.0))


def test_winner_referee_refuses_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        importlib.import_module("benchmarks.winner_referee").main([str(tmp_path)])
    assert exc.value.code == 2
    assert f"{tmp_path}: not a run folder (no run.json)" in capsys.readouterr().err


def test_probe_tracking_slope_and_the_heavy_probe() -> None:
    """A network that moves as the probe squared has slope 2; one that never moves has no correlation; the
    heavy probe's weights (50 MB) are more than this VM's 32 MiB L3, the reason it exists."""
    from benchmarks.probe_tracking import heavy_probe_module, tracking

    import numpy as np

    probe = np.array([10.0, 12.0, 15.0, 20.0])
    assert tracking(probe, probe ** 2)["slope"] == pytest.approx(2.0)
    assert tracking(probe, probe ** 2)["correlation"] == pytest.approx(1.0)
    assert tracking(probe, np.full(4, 5.0))["correlation"] is None
    assert tracking(np.full(4, 5.0), probe) == {"slope": None, "correlation": None}
    weights = sum(t.numel() for t in heavy_probe_module().parameters())
    assert weights == 12 * (1024 * 1024 + 1024) and weights * 4 > 32 * 2 ** 20
