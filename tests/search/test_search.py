"""`nas.search`: samplers, the latency constraint, storage and resume, interruption, the run folder."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from nas import api
from nas.cli import main
from nas.latency.timing import TableTimer
from nas.search import SAMPLERS, SearchSettings, make_sampler, parse_latency
from nas.search.results import hypervolume, pareto_mask
from nas.search.samplers import CategoricalQMCSampler
from nas.search.storage import add_trials_bulk, open_storage, storage_for
from nas.space import decisions, load_space
from proxies.latency import current_profile
from search_helpers import COSTS, TINY_SPACE, synthetic_model, synthetic_table

TARGET = 0.4  # ms on the synthetic table: about half of the tiny space is feasible


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
    assert summary["files"] == sorted(p.name for p in run.iterdir())  # summary.json itself included
    assert summary["target_latency_ms"] == TARGET and summary["n_trials"] == 30
    assert summary["n_feasible"] == int(trials["feasible"].sum())
    assert set(best) >= {"arch", "macs", "params", "predicted_latency_ms", "measured_latency_ms"}
    assert best["measured_latency_ms"] > 0 and best["number"] in set(pareto["number"])
    # best.yaml is the winner as a fixed architecture with the same costs.
    fixed = load_space(run / "best.yaml")
    assert not decisions(fixed)
    from nas.cost import CostModel
    cost = CostModel().cost(fixed)
    assert (cost.macs, cost.params) == (best["macs"], best["params"])
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plotly" in (run / "pareto.html").read_text()[:100000].lower()
    assert result.best_arch is not None


def test_winner_falls_back_when_measured_latency_misses() -> None:
    from nas.search.verify import choose_winner
    front = pd.DataFrame({"number": [4, 7, 8, 9], "arch": ["a", "b", "c", "d"], "macs": [1, 2, 3, 4],
                          "params": [1, 1, 1, 1], "objective": [1.0, 2.0, 3.0, 4.0],
                          "predicted_latency_ms": [5.0, 8.0, 9.0, 9.5]})
    measured = {9: 10.45, 8: 10.2, 7: 9.1, 4: 5.5}
    calls = []

    def measure(numbers):
        calls.append(numbers)
        return [(measured[n], 0.1) for n in numbers]

    winner, attempts = choose_winner(front, 10.0, measure, guard=0)
    assert calls == [[9, 8, 7, 4]]  # one rotation, best objective first
    assert winner["number"] == 7 and [a["number"] for a in attempts] == [9, 8, 7, 4]
    assert attempts[0]["meets_target"] is False and winner["meets_target"] is True
    calls.clear()
    winner, attempts = choose_winner(front, 5.0, measure, guard=0)  # only trial 4 is predicted within 5 ms; it misses
    assert calls == [[4]] and winner is None and attempts[0]["meets_target"] is False
    # A long front: the best MAX_WINNER_TRIES - 1 within the target by objective and the fastest point.
    from nas.search.verify import MAX_WINNER_TRIES
    long = pd.DataFrame({"number": range(20), "arch": ["a"] * 20, "macs": range(20), "params": [1] * 20,
                         "objective": [float(i) for i in range(20)], "predicted_latency_ms": [i / 2 for i in range(20)]})
    calls.clear()
    measured = {n: n / 2 for n in range(20)}
    winner, attempts = choose_winner(long, 8.0, measure, guard=0)
    assert MAX_WINNER_TRIES == 6 and calls == [[16, 15, 14, 13, 12, 0]] and winner["number"] == 16
    assert choose_winner(front, 10.0, None)[0]["number"] == 9  # unmeasured: the best by prediction


def _long_front(n: int = 40) -> pd.DataFrame:
    """A front whose objective grows with predicted latency, 0.5 ms apart."""
    return pd.DataFrame({"number": range(n), "arch": ["a"] * n, "macs": range(n), "params": [1] * n,
                         "objective": [float(i) for i in range(n)], "predicted_latency_ms": [i / 2 for i in range(n)]})


@pytest.mark.parametrize("bias", [1.25, 0.8])
def test_winner_check_rescales_predictions_by_what_it_measured(bias) -> None:
    """Predictions 25% low (or high): the first round's best points miss (or leave budget unused); later
    rounds rescale by measured / predicted and end near the target, not at the fastest point."""
    from nas.search.verify import MAX_ROUNDS, choose_winner
    calls = []

    def measure(numbers):
        calls.append(numbers)
        return [(bias * n / 2, 0.1) for n in numbers]

    winner, attempts = choose_winner(_long_front(), 15.0, measure, guard=0)
    assert 1 < len(calls) <= MAX_ROUNDS and calls[0][-1] == 0  # the fastest point in round 1
    assert winner["measured_latency_ms"] <= 15.0 and winner["measured_latency_ms"] >= 0.85 * 15.0
    assert winner["number"] == int(15.0 / (bias / 2))  # the best point that meets the target
    assert {a["round"] for a in attempts} == set(range(1, len(calls) + 1))
    assert len({a["number"] for a in attempts}) == len(attempts)  # nothing measured twice


def test_winner_check_stops_when_nothing_better_can_meet_the_target() -> None:
    from nas.search.verify import choose_winner
    calls = []

    def measure(numbers):
        calls.append(numbers)
        return [(n / 2, 0.1) for n in numbers]  # predictions exact

    winner, _ = choose_winner(_long_front(), 10.0, measure, guard=0)
    assert len(calls) == 1 and winner["number"] == 20


def test_winner_check_keeps_a_guard_under_the_target() -> None:
    """Trial 19 measures 9.88 ms: it meets 10 ms but not with WINNER_GUARD to spare, so the winner is the
    best point at or under 10 / (1 + guard) ms, trial 18 at 9.36 ms."""
    from nas.search.verify import WINNER_GUARD, choose_winner

    winner, attempts = choose_winner(_long_front(), 10.0, lambda numbers: [(1.04 * n / 2, 0.1) for n in numbers])
    assert WINNER_GUARD == 0.05 and winner["number"] == 18 and winner["within_guard"]
    nineteen = next(a for a in attempts if a["number"] == 19)
    assert nineteen["meets_target"] and not nineteen["within_guard"]


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
def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> tuple[Path, Path, Path, dict[str, str]]:
    """One finished run shared by the bad-input tests (each checks it is left byte for byte as it was)."""
    folder = tmp_path_factory.mktemp("earlier")
    tiny = folder / "tiny.yaml"
    tiny.write_text(TINY_SPACE)
    lut = folder / "lut.json"
    synthetic_table(tiny, lut)
    run = folder / "run"
    assert main(["search", "--space", str(tiny), "--target-latency", f"{TARGET}ms", "--lut", str(lut), "--threads",
                 "1", "--n-trials", "10", "--run-dir", str(run), "--no-measure", "--quiet", "--fit", "0"]) == 0
    return tiny, lut, run, _digest(run)


@pytest.mark.parametrize("extra, message", [
    (["--sampler", "cmaes"], "error: --sampler: unknown sampler 'cmaes'; choose one of tpe, nsga2, nsga3, gp, random, "
                             "qmc, auto"),
    (["--objective", "accuracy"], "error: --objective: unknown objective 'accuracy'; choose one of grad_norm, "
                                  "jacob_cov, macs, naswot, params, proxy, snip, supernet, synflow, trained, zen, or proxies joined by '+' "
                                  "(e.g. zen+naswot)"),
    (["--target-latency", "soon"], "error: --target-latency: cannot read 'soon'; write a positive number with a unit "
                                   "ms, us or s (e.g. 20ms, 1.5ms, 500us, 0.02s)"),
    (["--target-latency", "0s"], "error: --target-latency: '0s' is not a positive latency"),
    (["--target-latency", "0.05ms"], "error: no architecture in {space} meets 50us on {profile} with a 5.0% latency "
                                     "margin: the smallest predicted is 0.17 ms (r32|s1:d1,w16,b0=sg/k3/e2/se0|s2:d1,"
                                     "w32,b0=sg/k3/e2); lower --latency-margin or raise the target"),
    (["--target-latency", "0.05ms", "--latency-margin", "0"], "error: no architecture in {space} meets 50us on "
                                     "{profile}: the smallest predicted is 0.17 ms (r32|s1:d1,w16,b0=sg/k3/e2/se0|s2:"
                                     "d1,w32,b0=sg/k3/e2)"),
    (["--latency-margin", "150%"], "error: --latency-margin: 1.5 is not a fraction in [0, 1), e.g. 0.05 for 5%"),
    (["--latency-margin", "wide"], "error: --latency-margin: 'wide' is not a fraction or a percentage, e.g. 0.05 "
                                   "or 5%"),
    (["--fit", "2"], "error: --fit: 2 is not 0 or a number of networks >= 4"),
    (["--storage", "nosuchdb://x/y"], "error: cannot open storage 'nosuchdb://x/y': "),
    (["--n-trials", "0"], "error: --n-trials: 0 is not a positive number of trials"),
    (["--workers", "0"], "error: --workers: 0 is not a positive number of worker processes"),
    (["--workers", "2", "--heartbeat", "5", "--grace", "2"], "error: --heartbeat 5.0 / --grace 2.0: the heartbeat "
                                                             "must be a positive number of seconds shorter than the "
                                                             "grace period"),
])
def test_bad_input_exits_2_and_leaves_the_earlier_run_alone(earlier_run, capsys, monkeypatch, extra,
                                                            message) -> None:
    tiny, lut, run, before = earlier_run
    # A search scales predictions by the machine's speed against the table's level (the probe), so
    # "the smallest predicted" moved with the load of the machine (0.07-0.20 ms against 0.17); the
    # message is what is under test here, at the table's own level.
    monkeypatch.setattr(TableTimer, "current_speed", lambda self, readings=8: 1.0)
    capsys.readouterr()
    args = ["search", "--space", str(tiny), "--target-latency", f"{TARGET}ms", "--lut", str(lut), "--threads", "1",
            "--n-trials", "5", "--run-dir", str(run), "--quiet", "--fit", "0", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    profile = current_profile("torch", threads=1, batch_size=1).id
    expected = message.format(space=tiny, profile=profile)
    assert err.startswith(expected) and "\n" not in err, err
    assert _digest(run) == before


def test_study_made_for_another_space_is_refused(earlier_run, write_yaml, capsys, tmp_path) -> None:
    tiny, _, run, before = earlier_run
    other = write_yaml(TINY_SPACE.replace("width: [32, 40]", "width: [32, 48]"), "other.yaml")
    lut = tmp_path / "other-lut.json"
    synthetic_table(other, lut)
    capsys.readouterr()
    code = main(["search", "--space", str(other), "--target-latency", f"{TARGET}ms", "--lut", str(lut),
                 "--threads", "1", "--run-dir", str(run), "--study-name", "run", "--quiet", "--fit", "0",
                 "--storage", str(run / "study.journal")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: study 'run' in journal:{run / 'study.journal'} was made for space tiny (")
    assert "use another --study-name or --run-dir to start a new search" in err
    assert _digest(run) == before


def test_report_rebuilds_the_run_folder(earlier_run, capsys, tmp_path) -> None:
    import shutil
    run = shutil.copytree(earlier_run[2], tmp_path / "run")  # the shared run stays as it was
    info = json.loads((run / "run.json").read_text())
    info["storage"] = f"journal:{run / 'study.journal'}"
    (run / "run.json").write_text(json.dumps(info))
    (run / "trials.csv").unlink()
    (run / "pareto.png").unlink()
    assert main(["report", str(run), "--no-measure"]) == 0
    assert (run / "trials.csv").read_bytes() and (run / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(run / "trials.csv").shape[0] == 10
    assert main(["report", str(run.parent / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {run.parent / 'nope'}: not a run folder (no run.json); " \
                                              f"pass the folder `nas search` wrote"


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

    def fake_fit(self, space, n=20, seed=0, passes=3, progress=None):
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


def test_candidates_include_infeasible_trials_once_per_network() -> None:
    """The winner check may pick a point the search judged too slow (measurements can show the table
    over-predicts); a network sampled twice is one candidate, the first trial to sample it."""
    from nas.search.results import candidate_frame, pareto_frame

    trials = pd.DataFrame({"number": [0, 1, 2, 3, 4], "state": ["COMPLETE"] * 4 + ["FAIL"],
                           "arch": ["a", "b", "c", "b", "d"], "objective": [1.0, 2.0, 3.0, 2.0, None],
                           "predicted_latency_ms": [5.0, 8.0, 12.0, 8.0, None],
                           "feasible": [True, True, False, True, False]})
    assert list(pareto_frame(trials)["number"]) == [0, 1, 3]  # the feasible front keeps repeats
    assert list(candidate_frame(trials)["number"]) == [0, 1, 2]
