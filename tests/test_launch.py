"""`nas worker --dask` / `nas.launch.launch`: N tasks on a Dask cluster, each one worker of a run folder. The
launcher is exercised with a stand-in worker (which says where it ran); one test runs the real
`nas.api.run_worker` once that exists."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import optuna

from nas.cli import main
from nas.errors import NasError
from nas.launch import DASK_HINT, launch


def stand_in(run_dir: str, lut: str | None) -> tuple[int, str, str | None]:
    """A worker that takes long enough for the tasks to overlap and says which process ran it."""
    time.sleep(1.0)
    return os.getpid(), run_dir, lut


def test_without_dask_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as on a machine without the extra
    assert main(["worker", str(tmp_path), "--dask", "local", "-n", "2"]) == 2
    assert capsys.readouterr().err == ("error: the Dask launcher needs dask.distributed, which is not installed: "
                                       "pip install -e '.[dask]'\n")
    assert DASK_HINT == "pip install -e '.[dask]'"


def test_at_least_one_worker(tmp_path: Path) -> None:
    with pytest.raises(NasError, match="^-n: the number of workers must be at least 1, got 0$"):
        launch(tmp_path, 0, task=stand_in)


def test_n_without_dask_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", str(tmp_path), "-n", "2"]) == 2
    assert capsys.readouterr().err == ("error: -n: starts N workers as Dask tasks and needs --dask ADDRESS (or --dask "
                                       "local); for N local processes use `nas search --workers N`\n")


def test_n_tasks_run_in_n_local_processes(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed", reason="dask is not installed (pip install -e '.[dask]')")
    results = launch(tmp_path / "run", 2, lut="table.json", task=stand_in)
    assert len(results) == 2
    assert {r[1:] for r in results} == {(str((tmp_path / "run").resolve()), "table.json")}
    pids = {r[0] for r in results}
    assert len(pids) == 2 and os.getpid() not in pids  # two Dask worker processes, not this one


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed", reason="dask is not installed (pip install -e '.[dask]')")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(NasError, match=rf"^--dask tcp://127.0.0.1:{port}: cannot reach the Dask scheduler: ") as err:
        launch(tmp_path, 1, address=f"tcp://127.0.0.1:{port}", task=stand_in, connect_timeout_s=2)
    assert time.monotonic() - start < 15 and "\n" not in str(err.value)


def test_the_real_run_worker_joins_a_run_on_postgresql(tmp_path: Path, write_yaml, postgres_url: str) -> None:
    """Two real workers as Dask tasks on a run made by `nas search --storage`: they finish without error and
    leave a consistent study (unique numbers, nothing left RUNNING)."""
    import json

    pytest.importorskip("dask.distributed", reason="dask is not installed (pip install -e '.[dask]')")
    from search_helpers import TINY_SPACE, synthetic_table

    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut, run = tmp_path / "lut.json", tmp_path / "run"
    synthetic_table(tiny, lut)
    assert main(["search", "--space", str(tiny), "--target-latency", "0.4ms", "--lut", str(lut), "--threads", "1",
                 "--n-trials", "30", "--storage", postgres_url, "--run-dir", str(run), "--no-measure", "--quiet",
                 "--fit", "0"]) == 0
    assert len(launch(run, 2, lut=str(lut))) == 2
    study_name = json.loads((run / "run.json").read_text())["study_name"]
    trials = optuna.load_study(study_name=study_name, storage=postgres_url).get_trials()
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 30


def test_tasks_go_to_an_existing_scheduler(tmp_path: Path) -> None:
    """The recipe's path: `dask scheduler` and `dask worker` started apart (as on other machines), and the
    launcher given the scheduler's address; each task runs in a worker process of that cluster."""
    pytest.importorskip("dask.distributed", reason="dask is not installed (pip install -e '.[dask]')")
    import json
    import subprocess

    from roots import ROOT

    address_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask, "scheduler", "--scheduler-file", str(address_file), "--port", "0",
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(address_file.read_text())["address"]
        procs.append(subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--nworkers", "2",
                                       "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        from dask.distributed import Client

        with Client(address) as client:  # both worker processes joined, so each gets one task
            client.wait_for_workers(2, timeout=60)
        results = launch(tmp_path / "run", 2, address=address, task=stand_in)
        assert len({r[0] for r in results} - {os.getpid()}) == 2
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
