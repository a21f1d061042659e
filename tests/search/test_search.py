"""`nas.search`: samplers, the latency constraint, storage and resume, interruption, the run folder."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from nas import api
from nas.search import SAMPLERS, SearchSettings, make_sampler, parse_latency
from nas.search.results import hypervolume, pareto_mask
from nas.search.samplers import CategoricalQMCSampler
from nas.search.storage import add_trials_bulk, open_storage, storage_for
from nas.space import decisions, load_space
from search_helpers import COSTS, TARGET, TINY_SPACE, synthetic_model, synthetic_table


@pytest.fixture
def tiny(write_yaml) -> Path:
    return write_yaml(TINY_SPACE, "tiny.yaml")


def _stored(run: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials of a run folder's default storage (the journal file study.journal)."""
    return optuna.load_study(study_name=run.name, storage=storage_for(f"journal:{run / 'study.journal'}")).get_trials()


def _search(tiny: Path, run_dir: Path, *, measure: bool = False, progress=None, **settings) -> api.SearchResult:
    settings.setdefault("n_trials", 30)
    return api.search(tiny, f"{TARGET}ms", run_dir=run_dir, latency=synthetic_model(tiny), measure=measure,
                      progress=progress, cost=COSTS, **settings)


# ---- targets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, ms", [("20ms", 20.0), ("20 ms", 20.0), ("1.5ms", 1.5), ("500us", 0.5),
                                      ("0.02s", 20.0), ("7", 7.0), (" 2.5 MS ", 2.5), (3, 3.0)])
def test_target_latency_forms(text, ms) -> None:
    assert parse_latency(text) == pytest.approx(ms)


@pytest.mark.parametrize("text, message", [
    ("fast", "--target-latency: cannot read 'fast'; write a positive number with a unit ms, us or s "
             "(e.g. 20ms, 1.5ms, 500us, 0.02s)"),
    ("20 min", "--target-latency: cannot read '20 min'; write a positive number with a unit ms, us or s "
               "(e.g. 20ms, 1.5ms, 500us, 0.02s)"),
    ("-5ms", "--target-latency: cannot read '-5ms'; write a positive number with a unit ms, us or s "
             "(e.g. 20ms, 1.5ms, 500us, 0.02s)"),
    ("0ms", "--target-latency: '0ms' is not a positive latency"),
])
def test_bad_targets(text, message) -> None:
    with pytest.raises(ValueError) as info:
        parse_latency(text)
    assert str(info.value) == message


# ---- samplers -------------------------------------------------------------------------------------
def test_unknown_sampler() -> None:
    with pytest.raises(ValueError) as info:
        make_sampler("cmaes", 0, 2)
    assert str(info.value) == "--sampler: unknown sampler 'cmaes'; choose one of tpe, nsga2, nsga3, gp, random, qmc, auto"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_searches_the_tiny_space(tiny, tmp_path, sampler) -> None:
    n = 8 if sampler == "gp" else 25
    result = _search(tiny, tmp_path / sampler, sampler=sampler, seed=3, n_trials=n)
    space = load_space(tiny)
    frame = result.trials
    assert len(frame) == n and set(frame["state"]) == {"COMPLETE"}
    for d in decisions(space):  # every decision is an Optuna parameter under its flat name
        assert set(frame[d.name]) <= set(d.choices)
    assert frame[[d.name for d in decisions(space)]].drop_duplicates().shape[0] > n // 2  # it explores
    assert result.summary["best"] is not None and result.summary["best"]["predicted_latency_ms"] <= TARGET


def test_samplers_are_seeded(tiny, tmp_path) -> None:
    a = _search(tiny, tmp_path / "a", sampler="nsga2", seed=5).trials
    b = _search(tiny, tmp_path / "b", sampler="nsga2", seed=5).trials
    c = _search(tiny, tmp_path / "c", sampler="nsga2", seed=6).trials
    assert a["arch"].tolist() == b["arch"].tolist()
    assert a["arch"].tolist() != c["arch"].tolist()


def test_qmc_balances_every_binary_decision() -> None:
    """Scrambled Sobol' points: points 16..31 put exactly 8 on each side of every 2-choice decision
    (trial 0 only reveals the search space, so the first whole block of 16 is the second one)."""
    study = optuna.create_study(sampler=CategoricalQMCSampler(seed=1))
    names = [f"d{i}" for i in range(6)]
    study.optimize(lambda t: sum(t.suggest_categorical(n, [0, 1]) for n in names), n_trials=32)
    later = study.trials[16:32]
    assert [t.number for t in later] == list(range(16, 32))
    for n in names:
        counts = pd.Series([t.params[n] for t in later]).value_counts()
        assert counts.to_dict() in ({0: 8, 1: 8}, {1: 8, 0: 8})


# ---- objective, constraint, front ----------------------------------------------------------------
def test_constraint_marks_feasibility_and_the_front_is_feasible(tiny, tmp_path) -> None:
    result = _search(tiny, tmp_path / "run", sampler="random", n_trials=40)
    frame = result.trials
    for t in result.outcome.study.get_trials():
        # The synthetic table has no residuals yet: the default 5% margin.
        assert t.constraints["latency_ms"] == pytest.approx(1.05 * t.user_attrs["predicted_latency_ms"] - TARGET)
    assert (frame["feasible"] == (1.05 * frame["predicted_latency_ms"] <= TARGET)).all()
    assert 0 < frame["feasible"].sum() < len(frame)
    front = result.pareto
    assert front["feasible"].all() and front["predicted_latency_ms"].is_monotonic_increasing
    assert front["objective"].is_monotonic_increasing  # slower front points must be better
    feasible = frame[frame["feasible"]]
    for _, row in feasible.iterrows():  # nothing feasible dominates a front point
        dominated = ((feasible["objective"] >= row["objective"]) & (feasible["predicted_latency_ms"] <= row[
            "predicted_latency_ms"]) & ((feasible["objective"] > row["objective"]) | (
                feasible["predicted_latency_ms"] < row["predicted_latency_ms"]))).any()
        assert dominated == (row["number"] not in set(front["number"]))
    assert result.summary["best"]["objective"] == feasible["objective"].max()


def test_single_objective_mode(tiny, tmp_path) -> None:
    result = _search(tiny, tmp_path / "run", mode="single", sampler="tpe", objective="params", n_trials=30)
    study = result.outcome.study
    assert [d.name for d in study.directions] == ["MAXIMIZE"]
    frame = result.trials
    assert (frame["objective"] == frame["params"]).all()
    best = frame[frame["feasible"]]["objective"].max()
    assert study.best_trial.value == best and result.summary["best"]["objective"] == best


def test_pareto_mask_and_hypervolume() -> None:
    import numpy as np
    obj = np.array([1.0, 2.0, 2.0, 3.0, 1.5])
    lat = np.array([1.0, 2.0, 3.0, 4.0, 2.5])
    assert pareto_mask(obj, lat).tolist() == [True, True, False, True, False]
    # Front (1,1) (2,2) (4,3) against reference (obj 0, latency 5): 1*1 + 2*2 + 1*3 = 8.
    assert hypervolume(obj, lat, 0.0, 5.0) == pytest.approx(8.0)
    assert hypervolume(obj, lat, 5.0, 5.0) == 0.0


# ---- storage: batched writes, resume, interruption -------------------------------------------------
def test_bulk_writes_read_back_exactly(tiny, tmp_path) -> None:
    memory = _search(tiny, tmp_path / "mem", sampler="random", storage="sqlite:///" + str(tmp_path / "a.db"),
                     n_trials=12).outcome.study
    storage = open_storage("sqlite:///" + str(tmp_path / "b.db"))
    copy = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    add_trials_bulk(storage, copy.study_name, memory.get_trials()[:5])
    add_trials_bulk(storage, copy.study_name, memory.get_trials()[5:])
    for a, b in zip(memory.get_trials(), optuna.load_study(study_name=copy.study_name,
                                                           storage="sqlite:///" + str(tmp_path / "b.db")).get_trials()):
        assert (a.number, a.state, a.params, a.distributions, a.values, a.user_attrs, a.system_attrs,
                a.datetime_start, a.datetime_complete) == (b.number, b.state, b.params, b.distributions, b.values,
                                                           b.user_attrs, b.system_attrs, b.datetime_start,
                                                           b.datetime_complete)


def test_resume_adds_trials_and_keeps_earlier_ones(tiny, tmp_path) -> None:
    run = tmp_path / "run"
    first = _search(tiny, run, sampler="nsga2", n_trials=20).trials
    second = _search(tiny, run, sampler="nsga2", n_trials=15).trials
    assert len(second) == 35 and second["number"].tolist() == list(range(35))
    pd.testing.assert_frame_equal(first, second.iloc[:20].reset_index(drop=True))
    assert json.loads((run / "summary.json").read_text())["n_trials"] == 35


class _StopAfter:
    """A progress display whose update raises KeyboardInterrupt at trial `k`, like Ctrl-C."""

    def __init__(self, k: int) -> None:
        self.k = k

    def start(self, total, stats) -> None:
        pass

    def update(self, stats) -> None:
        if stats.new == self.k:
            raise KeyboardInterrupt

    def close(self, stats) -> None:
        self.closed = stats.new


def test_interrupt_keeps_completed_trials_and_writes_the_report(tiny, tmp_path) -> None:
    run = tmp_path / "run"
    result = _search(tiny, run, sampler="tpe", n_trials=50, progress=_StopAfter(13))
    assert result.outcome.interrupted
    stored = _stored(run)
    assert [t.number for t in stored] == list(range(13)) and all(t.state.name == "COMPLETE" for t in stored)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["n_trials"] == 13
    assert len(pd.read_csv(run / "trials.csv")) == 13
    again = _search(tiny, run, sampler="tpe", n_trials=5)  # and the next run resumes from there
    assert len(again.trials) == 18


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_interrupt_with_a_signal_from_the_command_line(tiny, tmp_path, signame) -> None:
    """A real Ctrl-C (or kill): the process exits 130 and every trial it finished is in the study."""
    import signal
    import subprocess
    import sys
    import time

    lut = tmp_path / "lut.json"
    synthetic_table(tiny, lut)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nas", "search", "--space", str(tiny), "--target-latency", f"{TARGET}ms",
           "--lut", str(lut), "--threads", "1", "--n-trials", "100000", "--run-dir", str(run), "--no-measure",
           "--quiet", "--fit", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "study.journal").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3.0)  # past the first batch write
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    kept = _stored(run)
    assert len(kept) > 0 and all(t.state.name == "COMPLETE" for t in kept)
    assert f"interrupted: {len(kept)} completed trials of this run are kept in" in err
    assert json.loads((run / "summary.json").read_text())["n_trials"] == len(kept)


# ---- the run folder ---------------------------------------------------------------------------------
def test_run_folder_files_and_columns(tiny, tmp_path) -> None:
    run = tmp_path / "run"
    result = _search(tiny, run, sampler="nsga2", n_trials=30, measure=True)
    space = load_space(tiny)
    names = [d.name for d in decisions(space)]
    for f in ("study.journal", "run.json", "trials.csv", "pareto.csv", "pareto.png", "pareto.html", "best.yaml",
              "best_model.py", "best_model.onnx", "summary.json"):
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    trials = pd.read_csv(run / "trials.csv")
    expected = ["number", "state", *names, "macs", "params", "predicted_latency_ms", "latency_upper_ms", "objective",
                "feasible", "arch", "worker"]
    assert list(trials.columns) == expected and len(trials) == 30
    pareto = pd.read_csv(run / "pareto.csv")
    assert list(pareto.columns) == expected and pareto["feasible"].all()
    assert pareto["predicted_latency_ms"].is_monotonic_increasing
    summary = json.loads((run / "summary.json").read_text())
    best = summary["best"]
    # summary.json itself included; the journal's hidden lock file (nas.search.journal_lock) is not
    assert summary["files"] == sorted(p.name for p in run.iterdir() if p.name != ".study.journal.flock")
    assert summary["target_latency_ms"] == TARGET and summary["n_trials"] == 30
    assert summary["n_feasible"] == int(trials["feasible"].sum())
    assert set(best) >= {"arch", "macs", "params", "predicted_latency_ms", "measured_latency_ms"}
    assert best["measured_latency_ms"] > 0 and best["number"] in set(pareto["number"])
    low, high = summary["machine_speed_range"]  # the network probe over the check, against the level
    assert 0 < low <= summary["machine_speed"] <= high
    # The winner's prediction at the check's speed: the same table figure, at the speed of its round.
    assert best["predicted_at_check_ms"] == pytest.approx(
        best["predicted_latency_ms"] / summary["machine_speed_at_start"] * best["machine_speed"])
    lo_ms, hi_ms = summary["plain_timing_range_ms"]
    assert lo_ms == pytest.approx(best["measured_level_ms"] * low) and hi_ms == pytest.approx(best["measured_level_ms"] * high)
    # best.yaml is the winner as a fixed architecture with the same costs.
    fixed = load_space(run / "best.yaml")
    assert not decisions(fixed)
    from nas.cost import CostModel
    cost = CostModel().cost(fixed)
    assert (cost.macs, cost.params) == (best["macs"], best["params"])
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plotly" in (run / "pareto.html").read_text()[:100000].lower()
    assert result.best_arch is not None


def test_no_feasible_trial_reports_the_least_violating(tiny, tmp_path) -> None:
    """A study whose trials all miss the target (e.g. the table was re-measured slower after the search)."""
    from nas.report import RunInfo, write_report
    searched = _search(tiny, tmp_path / "first", sampler="random", n_trials=12).outcome.study
    study = optuna.create_study(directions=["maximize", "minimize"])
    for t in searched.get_trials():
        t.system_attrs["constraints:latency_ms"] = 1.0 + t.user_attrs["predicted_latency_ms"]
        study.add_trial(t)
    info = RunInfo.load(tmp_path / "first")
    run = tmp_path / "run"
    summary = write_report(run, study, load_space(tiny), info)
    assert summary["n_feasible"] == 0 and summary["best"] is None and summary["pareto_size"] == 0
    fastest = sorted(t.user_attrs["predicted_latency_ms"] for t in searched.get_trials())[:5]
    assert [r["predicted_latency_ms"] for r in summary["least_violating"]] == fastest
    assert not (run / "best.yaml").exists() and (run / "pareto.png").is_file()


# ---- bad input: one line, exit 2, earlier runs untouched ----------------------------------------------
def test_auto_sampler_choice() -> None:
    from nas.search.samplers import auto_choice
    assert auto_choice(2, 300) == "tpe" and auto_choice(1, 300) == "tpe"
    assert auto_choice(2, 5000) == "nsga2" and auto_choice(2, None) == "nsga2" and auto_choice(1, None) == "tpe"
    assert type(make_sampler("auto", 0, 2, 300)).__name__ == "TPESampler"
    assert type(make_sampler("auto", 0, 2, 5000)).__name__ == "NSGAIISampler"


# ---- the latency margin and the correction fitted at the start ---------------------------------------
def test_feasible_means_the_upper_end_meets_the_target(tiny, tmp_path) -> None:
    result = _search(tiny, tmp_path / "run", sampler="random", n_trials=40, latency_margin=0.25)
    trials = result.trials
    assert trials["latency_upper_ms"].to_numpy() == pytest.approx(1.25 * trials["predicted_latency_ms"].to_numpy())
    assert (trials["feasible"] == (trials["latency_upper_ms"] <= TARGET)).all()
    # Some trials meet the target on their prediction alone but not with the margin: they are not feasible.
    assert ((trials["predicted_latency_ms"] <= TARGET) & ~trials["feasible"]).any()
    assert (result.pareto["latency_upper_ms"] <= TARGET).all()


def test_default_margin_follows_the_tables_residuals(tiny, tmp_path) -> None:
    from proxies.latency import Correction

    model = synthetic_model(tiny)
    assert model.default_margin() == 0.05  # nothing known yet
    model.table.correction = Correction(scale=1.0, offset_ms=0.0, n=20, mape=0.02, residual_mean=0.01,
                                        residual_sd=0.02, residual_n=50)
    assert model.default_margin() == pytest.approx(0.01 + 1.645 * 0.02)
    search = api.prepare_search(tiny, api.SearchSettings(target_ms=TARGET, run_dir=tmp_path / "run"), model, COSTS)
    assert search.margin == pytest.approx(0.01 + 1.645 * 0.02)


def test_a_table_without_a_correction_gets_one_fitted_before_the_search(tiny, tmp_path, monkeypatch) -> None:
    from nas.latency import LatencyModel
    from proxies.latency import Correction

    model = synthetic_model(tiny)
    model.measure_missing = True  # the search may measure: the first search from an empty cache
    fitted = []

    def fake_fit(self, space, n=20, seed=0, passes=3, progress=None, unit_progress=None):
        fitted.append((n, passes))
        self.table.correction = Correction(scale=1.1, offset_ms=0.0, n=n, mape=0.02, residual_mean=0.0,
                                           residual_sd=0.03, residual_n=n)
        return self.table.correction

    monkeypatch.setattr(LatencyModel, "fit_correction", fake_fit)
    search = api.prepare_search(tiny, api.SearchSettings(target_ms=TARGET, run_dir=tmp_path / "run", fit=8),
                                model, COSTS)
    assert fitted == [(8, 2)] and search.margin == pytest.approx(1.645 * 0.03)
    api.prepare_search(tiny, api.SearchSettings(target_ms=TARGET, run_dir=tmp_path / "again", fit=8), model, COSTS)
    assert len(fitted) == 1  # the table keeps its correction: fitted once


# ---- the registries ----------------------------------------------------------------------------------
def test_registering_a_sampler_twice_is_an_error() -> None:
    from nas.search.samplers import register_sampler, sampler_help

    with pytest.raises(ValueError) as info:
        register_sampler("tpe", "again", lambda seed, n_objectives, n_trials: optuna.samplers.RandomSampler(seed))
    assert str(info.value) == "sampler 'tpe' is already registered"
    assert sampler_help() == ("tpe, nsga2, nsga3, gp, random, qmc, auto (default auto: multivariate TPE up to 1000 "
                              "trials, NSGA-II for longer two-objective runs)")


def test_a_registered_sampler_is_a_search_choice(tiny, tmp_path, monkeypatch) -> None:
    from nas.search import samplers

    monkeypatch.setitem(samplers.SAMPLERS, "plain", samplers.SamplerEntry(
        "plain", "random, by another name", lambda seed, n_objectives, n_trials: optuna.samplers.RandomSampler(seed)))
    result = _search(tiny, tmp_path / "run", sampler="plain", n_trials=5)
    assert len(result.trials) == 5 and result.summary["sampler"] == "plain"


def test_the_winner_check_rescales_the_tables_correction_for_the_next_search(tiny, tmp_path, monkeypatch) -> None:
    """Networks measure 20% over the table's prediction (at its level) in the winner check: the table
    file's correction is rescaled by 1.2 and summary.json says so; the next search on that table measures
    its networks as now predicted, and leaves the correction alone."""
    from nas.latency import LatencyModel
    from nas.search.run import Search
    from proxies.latency import Correction, Entry, LatencyTable

    path = tmp_path / "table.json"
    model = LatencyModel(synthetic_table(tiny, path), measure_missing=True)
    model.table.correction = Correction(scale=1.0, offset_ms=0.01, n=12, mape=0.02)
    model.table.set_reference(Entry(ms=1.0, spread_ms=0.0, runs=3, rounds=1))  # the speed levels: no probe read
    model.table.set_network_reference(Entry(ms=1.0, spread_ms=0.0, runs=3, rounds=1))
    model.table.save()
    monkeypatch.setattr(Search, "calibrate", lambda self: None)  # no probe: the machine at the table's level
    slower = 1.2

    def measure_networks(self, space, archs, passes=3, progress=None):
        level = [self.predict_ms(space, a) * slower for a in archs]
        self.last_raw, self.last_speed, self.last_pass_spread = level, 1.0, [0.01] * len(archs)
        self.network_probe_readings += [1.0] * len(archs)
        return level

    monkeypatch.setattr(LatencyModel, "measure_networks", measure_networks)
    result = api.search(tiny, f"{TARGET}ms", run_dir=tmp_path / "run", latency=model, measure=True, cost=COSTS,
                        n_trials=30, seed=0)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    recalibration = summary["correction_recalibrated"]
    assert recalibration == result.summary["correction_recalibrated"]
    assert recalibration["factor"] == pytest.approx(slower) and recalibration["networks"] >= 4
    saved = LatencyTable.load(path).correction
    assert (saved.scale, saved.offset_ms) == pytest.approx((1.2, 0.012)) and saved.n == 12 + recalibration["networks"]
    slower = 1.0  # the machine runs networks as the rescaled table now predicts them
    again = api.search(tiny, f"{TARGET}ms", run_dir=tmp_path / "again", latency=LatencyModel(LatencyTable.load(path)),
                       measure=True, cost=COSTS, n_trials=30, seed=0)
    assert "correction_recalibrated" not in again.summary and LatencyTable.load(path).correction == saved
