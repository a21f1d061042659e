"""Shared mode: workers on one stored study (journal file), the trial budget, heartbeats and retries, `nas worker`
refusals, the journal default and resume of an old study.db run folder."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
import pytest

from nas.cli import main
from nas.search.storage import storage_for
from nas.space import decisions, load_space
from proxies.latency import LatencyTable, current_profile
from roots import ROOT
from search_helpers import TINY_SPACE, synthetic_table

TARGET = 0.4  # ms on the synthetic table


def _args(tiny: Path, lut: Path, run: Path, *extra: str) -> list[str]:
    return ["search", "--space", str(tiny), "--target-latency", f"{TARGET}ms", "--lut", str(lut), "--threads", "1",
            "--run-dir", str(run), "--no-measure", "--quiet", "--fit", "0", *extra]


def _study(run: Path) -> optuna.Study:
    info = json.loads((run / "run.json").read_text())
    return optuna.load_study(study_name=info["study_name"], storage=storage_for(info["storage"]))


def _env(**extra: str) -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """`nas search --workers 2 --n-trials 30` on the tiny space (module-wide: the refusal tests reuse it).
    Each trial sleeps 0.5 s (the test's `sleepy` objective: MACs after a sleep), so that the two workers
    overlap: with instant trials, the first worker up did all 30 before the second had imported torch."""
    folder = tmp_path_factory.mktemp("shared")
    tiny, lut, run = folder / "tiny.yaml", folder / "lut.json", folder / "run"
    tiny.write_text(TINY_SPACE)
    synthetic_table(tiny, lut)
    with pytest.MonkeyPatch.context() as env:
        for name, value in _env(NAS_PLUGINS="slow_objective", NAS_TEST_SLEEP_S="0.5").items():
            env.setenv(name, value)
        assert main(_args(tiny, lut, run, "--workers", "2", "--n-trials", "30", "--objective", "sleepy")) == 0
    return tiny, lut, run


def test_two_workers_end_with_exactly_the_budget_and_sample_from_each_other(shared_run) -> None:
    tiny, lut, run = shared_run
    info = json.loads((run / "run.json").read_text())
    assert (info["run_mode"], info["budget"], info["workers"]) == ("shared", 30, 2)
    assert info["storage"] == f"journal:{run / 'study.journal'}"
    trials = pd.read_csv(run / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) == 30 and trials["number"].is_unique
    assert done["worker"].nunique() == 2  # host:pid of each worker process
    assert all(re.fullmatch(r".+:\d+", w) for w in done["worker"])
    # A worker asked trials with the other's COMPLETE trials in the study: it sampled from them. Not both
    # need to: one worker can finish its share before the other's first tell (seen in CI: {'a': 0, 'b': 9});
    # the later one then necessarily sees the earlier one's trials.
    study = _study(run)
    seen = {}
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        seen[t.user_attrs["worker"]] = max(seen.get(t.user_attrs["worker"], 0), t.user_attrs["others_complete"])
    assert len(seen) == 2 and max(seen.values()) > 0, seen
    workers = json.loads((run / "workers.json").read_text())
    assert set(workers) == set(done["worker"])
    profile = current_profile("torch", threads=1, batch_size=1).id
    assert {w["profile"] for w in workers.values()} == {profile}
    assert {w["table_checksum"] for w in workers.values()} == {info["table_checksum"]}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_complete"] == 30 and summary["run_mode"] == "shared" and len(summary["workers"]) == 2
    assert sum(w["complete"] for w in summary["workers"].values()) == 30
    for log in (run / "workers").glob("worker-*.log"):  # e.g. Optuna's "constraint value is ignored"
        assert "Warning" not in log.read_text(), log.read_text()
    (run / "workers.json").unlink()
    assert main(["report", str(run), "--no-measure"]) == 0  # `nas report` reads the shared study as it is
    assert set(json.loads((run / "workers.json").read_text())) == set(done["worker"])
    assert len(pd.read_csv(run / "trials.csv")) == len(trials)


def test_the_budget_rule_counts_complete_trials_and_those_in_flight_below() -> None:
    from nas.search.shared import count
    states = {"COMPLETE": optuna.trial.TrialState.COMPLETE, "RUNNING": optuna.trial.TrialState.RUNNING,
              "WAITING": optuna.trial.TrialState.WAITING, "FAIL": optuna.trial.TrialState.FAIL}
    rows = [("COMPLETE", "a"), ("RUNNING", "b"), ("FAIL", "b"), ("WAITING", None), ("COMPLETE", "b"), ("RUNNING", "a")]
    trials = []
    for number, (state, worker) in enumerate(rows):
        t = optuna.trial.create_trial(state=states[state], values=[1.0] if state == "COMPLETE" else None,
                                      user_attrs={"worker": worker} if worker else {})
        t.number = number
        trials.append(t)
    everything = count(trials, "a")
    assert (everything.complete, everything.running, everything.others_complete) == (2, 2, 1)
    # Trial 5 asked with a budget of 4: 2 COMPLETE + trials 1 (RUNNING) and 3 (WAITING) below it fill it.
    below = count(trials, "a", below=5)
    assert below.complete + below.running == 4
    assert count(trials, "a", below=2).running == 1  # trial 1 only; FAIL never counts


class CountingStorage(optuna.storages.InMemoryStorage):
    """In-memory storage that counts writes to trials (each is one commit on a database server)."""

    writes = 0

    def create_new_trial(self, *args, **kwargs):
        self.writes += 1
        return super().create_new_trial(*args, **kwargs)

    def set_trial_user_attr(self, *args, **kwargs):
        self.writes += 1
        return super().set_trial_user_attr(*args, **kwargs)

    def set_trial_system_attr(self, *args, **kwargs):
        self.writes += 1
        return super().set_trial_system_attr(*args, **kwargs)

    def set_trial_state_values(self, *args, **kwargs):
        self.writes += 1
        return super().set_trial_state_values(*args, **kwargs)


def test_a_claimed_trial_is_stored_in_one_write_and_told_in_two() -> None:
    """What is known before the objective runs (drawn with the decisions) goes into the one write that stores
    the trial RUNNING, with the worker, the others' count and a fresh heartbeat; telling writes only what
    changed (the objective) and the state. Every write is a commit on PostgreSQL (about 25 ms here)."""
    from nas.search.shared import BUDGET_ATTR, HEARTBEAT, WorkerLoop

    storage = CountingStorage()
    study = optuna.create_study(storage=storage, directions=["maximize"])
    study.set_user_attr(BUDGET_ATTR, 3)
    loop = WorkerLoop(study, storage, optuna.samplers.RandomSampler(seed=0), ["maximize"], grace_s=30, me="w")

    def suggest(trial: optuna.Trial) -> dict:
        x = trial.suggest_categorical("x", [1, 2, 3])
        trial.set_user_attr("macs", 10 * x)
        trial.set_constraint("latency_ms", -1.0)
        return {"x": x}

    storage.writes = 0
    claim = loop.next_trial(lambda: False, suggest)
    assert storage.writes == 1 and claim.fresh
    stored = study.get_trials()[claim.number]
    assert stored.state.name == "RUNNING" and stored.params == claim.trial.params
    assert stored.user_attrs == {"macs": 10 * claim.trial.params["x"], "worker": "w", "others_complete": 0}
    assert stored.constraints == {"latency_ms": -1.0} and HEARTBEAT in stored.system_attrs
    storage.writes = 0
    claim.trial.set_user_attr("objective", 5.0)
    assert loop.tell(claim, [5.0]) and storage.writes == 2
    done = study.get_trials()[claim.number]
    assert done.state.name == "COMPLETE" and done.values == [5.0] and done.user_attrs["objective"] == 5.0


def _worker(run: Path, *extra: str, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["worker", str(run), "--quiet", *extra])
    return code, capsys.readouterr().err.strip()


def test_a_worker_with_another_latency_profile_is_refused(shared_run, tmp_path, capsys) -> None:
    tiny, lut, run = shared_run
    before = len(_study(run).get_trials())
    other = LatencyTable(current_profile("torch", threads=2, batch_size=1), dict(LatencyTable.load(lut).entries),
                         path=tmp_path / "t2.json")
    other.save()
    code, err = _worker(run, "--lut", str(tmp_path / "t2.json"), capsys=capsys)
    want = current_profile("torch", threads=1, batch_size=1).id
    assert code == 2 and "\n" not in err, err
    assert err == (f"error: {tmp_path / 't2.json'}: latency profile {other.profile.id} is not the run's {want}; pass "
                   f"the run's table with --lut FILE, or run `nas lut build --space {tiny}` on the run's device")
    assert len(_study(run).get_trials()) == before


def test_a_worker_for_another_space_is_refused(shared_run, tmp_path, capsys) -> None:
    tiny, lut, run = shared_run
    before = (run / "study.journal").read_bytes()
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPACE.replace("width: [32, 40]", "width: [32, 48]"))
    code, err = _worker(run, "--space", str(other), capsys=capsys)
    assert code == 2 and "\n" not in err, err
    assert err.startswith(f"error: study 'run' in journal:{run / 'study.journal'} was made for space tiny (")
    assert (run / "study.journal").read_bytes() == before


def test_a_worker_on_a_single_process_run_is_refused(tmp_path, write_yaml, capsys) -> None:
    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut = tmp_path / "lut.json"
    synthetic_table(tiny, lut)
    run = tmp_path / "single"
    assert main(_args(tiny, lut, run, "--n-trials", "5")) == 0
    assert (run / "study.journal").is_file() and not (run / "study.db").exists()  # the new default storage
    assert json.loads((run / "run.json").read_text())["run_mode"] == "single"
    code, err = _worker(run, capsys=capsys)
    assert (code, err) == (2, f"error: {run}: this run was started single-process; workers can join only a run "
                              f"started with `nas search --workers N` or a server --storage")


def test_an_old_study_db_run_folder_resumes_on_sqlite(tmp_path, write_yaml) -> None:
    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut = tmp_path / "lut.json"
    synthetic_table(tiny, lut)
    run = tmp_path / "old"
    run.mkdir()
    url = f"sqlite:///{run / 'study.db'}"
    assert main(_args(tiny, lut, run, "--n-trials", "6", "--storage", url)) == 0  # as earlier versions left it
    assert main(_args(tiny, lut, run, "--n-trials", "4")) == 0  # no --storage: the folder's study.db
    assert not (run / "study.journal").exists()
    assert json.loads((run / "run.json").read_text())["storage"] == url
    trials = optuna.load_study(study_name="old", storage=url).get_trials()
    assert [t.number for t in trials] == list(range(10)) and all(t.state.name == "COMPLETE" for t in trials)


def test_a_journal_path_is_a_storage(tmp_path, write_yaml) -> None:
    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut = tmp_path / "lut.json"
    synthetic_table(tiny, lut)
    for i, spelling in enumerate([str(tmp_path / "a.journal"), f"journal:{tmp_path / 'b.log'}"]):
        assert main(_args(tiny, lut, tmp_path / f"run{i}", "--n-trials", "3", "--storage", spelling)) == 0
    assert len(optuna.load_study(study_name="run0", storage=storage_for(str(tmp_path / "a.journal"))).trials) == 3
    assert len(optuna.load_study(study_name="run1", storage=storage_for(f"journal:{tmp_path / 'b.log'}")).trials) == 3


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_a_killed_worker_trial_is_failed_and_retried_once(tmp_path, write_yaml, storage, request) -> None:
    """SIGKILL one of 2 workers mid-trial: its trial ends FAIL, is retried (same params, `retry_of`) by the
    other worker within the grace period, and the study still ends with exactly the budget; on the run
    folder's journal file and on a real PostgreSQL server."""
    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut = tmp_path / "lut.json"
    synthetic_table(tiny, lut)
    run = tmp_path / "run"
    where = () if storage == "journal" else ("--storage", request.getfixturevalue("postgres_url"))
    cmd = [sys.executable, "-m", "nas", *_args(tiny, lut, run, "--workers", "2", "--n-trials", "6", "--objective",
                                               "sleepy", "--sampler", "random", "--heartbeat", "0.2", "--grace", "1.5",
                                               *where)]
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(NAS_PLUGINS="slow_objective", NAS_TEST_SLEEP_S="3.0"))
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and parent.poll() is None:
        time.sleep(0.3)
        if (run / "run.json").exists() and (storage != "journal" or (run / "study.journal").exists()):
            running = [t for t in _study(run).get_trials(states=(optuna.trial.TrialState.RUNNING,))
                       if "worker" in t.user_attrs and "nas:heartbeat" in t.system_attrs]
            fresh = [t for t in running if (datetime.now() - t.datetime_start).total_seconds() < 1.0]
            if fresh and len(_study(run).get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= 1:
                victim = fresh[0]  # at least 2 s of its 3 s objective to go
    assert victim is not None, parent.communicate(timeout=60)  # stored RUNNING with its decisions, 3 s to go
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    killed_at = datetime.now()
    out, err = parent.communicate(timeout=180)
    assert parent.returncode == 0, err
    trials = _study(run).get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[victim.number].state.name == "FAIL"
    # Failed within the grace period (1.5 s, plus a heartbeat and some slack), although the other worker
    # was in the middle of a 3 s trial: its heartbeat thread reaps too.
    assert (by_number[victim.number].datetime_complete - killed_at).total_seconds() < 3.0
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert len(by_number[victim.number].params) == len(decisions(load_space(tiny)))
    assert retries[0].params == by_number[victim.number].params and retries[0].number > victim.number
    assert retries[0].user_attrs["worker"] != victim.user_attrs["worker"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6 and len({t.number for t in trials}) == len(trials)
    assert re.search(r"exit -9, \d+ trials", err), err


def _start_sleepy(tmp_path: Path, write_yaml, n_trials: int, sleep_s: float) -> tuple[subprocess.Popen, Path]:
    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut = tmp_path / "lut.json"
    synthetic_table(tiny, lut)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nas", *_args(tiny, lut, run, "--workers", "2", "--n-trials", str(n_trials),
                                               "--objective", "sleepy", "--sampler", "random")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(NAS_PLUGINS="slow_objective", NAS_TEST_SLEEP_S=str(sleep_s))), run


def _wait_for(run: Path, parent: subprocess.Popen, ready) -> list[optuna.trial.FrozenTrial]:
    deadline = time.time() + 120
    while time.time() < deadline and parent.poll() is None:
        time.sleep(0.3)
        if (run / "study.journal").exists() and (run / "run.json").exists():
            trials = _study(run).get_trials()
            if ready(trials):
                return trials
    raise AssertionError(parent.communicate(timeout=60))


def _states(trials) -> list[str]:
    return [t.state.name for t in trials]


def test_ctrl_c_of_the_parent_stops_every_worker_after_its_trial(tmp_path, write_yaml) -> None:
    parent, run = _start_sleepy(tmp_path, write_yaml, 40, 1.5)
    # Both workers in their loops (each has a trial), so that both can stop cleanly.
    _wait_for(run, parent, lambda trials: _states(trials).count("COMPLETE") >= 1
              and len({t.user_attrs.get("worker") for t in trials} - {None}) == 2)
    parent.send_signal(signal.SIGINT)
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == 130, err
    trials = _study(run).get_trials()
    assert set(_states(trials)) == {"COMPLETE"} and len(trials) < 40  # trials in flight finished, none left
    assert err.count("exit 130") == 2, err
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True


def test_sigterm_of_one_worker_leaves_the_others_running(tmp_path, write_yaml) -> None:
    parent, run = _start_sleepy(tmp_path, write_yaml, 8, 1.0)
    trials = _wait_for(run, parent, lambda ts: "RUNNING" in _states(ts) and "COMPLETE" in _states(ts))
    worker = next(t.user_attrs["worker"] for t in trials if t.state.name == "RUNNING" and "worker" in t.user_attrs)
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGTERM)
    out, err = parent.communicate(timeout=180)
    assert parent.returncode == 0, err
    trials = _study(run).get_trials()
    assert _states(trials).count("COMPLETE") == 8 and "RUNNING" not in _states(trials)
    # Its trial in flight was finished, not abandoned (a FAIL here can only be a race for the last slot).
    assert all(t.user_attrs.get("fail_reason") == "over budget" for t in trials if t.state.name == "FAIL")
    assert re.search(r"exit 130, \d+ trials", err) and re.search(r"exit 0, \d+ trials", err), err
