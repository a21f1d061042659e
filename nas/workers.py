"""Workers on one shared study: `nas search --workers N` starts them, `nas worker RUN_DIR` joins a run.

The parent creates the study once (no table-creation race), covers the space
in the latency table, fits its correction and reads the machine's speed once,
writes run.json, then starts N processes of `python -m nas worker RUN_DIR`
(each in its own session, so a Ctrl-C at the terminal reaches the parent
alone, which then asks every worker to stop after its trial in flight). Each
worker scores from the run's table with the run's speed factor, never its own
probe; a unit missing from the table is measured only by a worker whose own
device profile is the table's, in memory (the shared file is never written
by workers); any other worker refuses in one line.

Threads: a local worker scores (objectives such as zero-cost proxies) with
the profile's threads divided among the workers (at least 1), so N workers
do not oversubscribe the machine; the latency profile and its table stay as
they are, since workers predict from the table and do not time anything.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nas.errors import NasError
from nas.latency import LatencyModel
from nas.report import RunInfo
from nas.search.loop import Progress, SearchStats, stop_signals
from nas.search.run import Search, SearchOutcome
from nas.search.settings import SearchSettings
from nas.search.shared import BUDGET_ATTR, RUN_MODE_ATTR
from nas.space import load_space
from proxies.latency import LatencyTable, current_profile

POLL_S = 0.5  # how often the parent reads the study's progress


def worker_latency(info: RunInfo, run_dir: str | os.PathLike, lut: str | os.PathLike | None = None
                   ) -> tuple[LatencyModel, bool]:
    """The run's table (or `lut`), checked against the run's profile, and whether this machine may measure a
    unit missing from it (only when this machine's own profile is the table's)."""
    path = lut or info.table
    if path is None or not Path(path).is_file():
        raise NasError(f"{run_dir}: no latency table at {path}; copy the run's table to this machine and pass "
                       f"--lut FILE")
    table = LatencyTable.load(path)
    if info.latency_profile is not None and table.profile.id != info.latency_profile:
        raise NasError(f"{path}: latency profile {table.profile.id} is not the run's {info.latency_profile}; "
                       f"pass the run's table with --lut FILE, or run `nas lut build --space {info.space}` on the "
                       f"run's device")
    p = table.profile
    try:
        own = None if p.remote else current_profile(p.backend, threads=p.threads, batch_size=p.batch_size)
    except Exception:  # a backend this machine lacks: it cannot be the table's device
        own = None
    same = own == p
    table.path = None  # workers never write the shared file; what one measures stays in its memory
    return LatencyModel(table, measure_missing=same), same


def sampler_name(label: str) -> str:
    """The sampler a run used, from its label in run.json: `auto (tpe)` -> tpe."""
    return label.split("(", 1)[1].rstrip(")") if label.startswith("auto (") else label


def join_run(run_dir: str | os.PathLike, *, lut: str | os.PathLike | None = None,
             space: str | os.PathLike | None = None, say: Callable[[str], None] | None = None) -> Search:
    """A Search that joins the shared run in `run_dir`: the run's settings, table, speed and study, checked
    as resume checks them (StudyMismatchError), with this worker recorded in the study. `lut` and `space`
    name the run's table and space file where this machine keeps them elsewhere than run.json says."""
    info = RunInfo.load(run_dir)
    if info.run_mode != "shared":
        raise NasError(f"{run_dir}: this run was started single-process; workers can join only a run started "
                       f"with `nas search --workers N` or a server --storage")
    space_ = load_space(space or info.space)
    latency, may_measure = worker_latency(info, run_dir, lut)
    settings = SearchSettings(
        target_ms=info.target_ms, objective=info.objective_option or info.objective,
        sampler=sampler_name(info.sampler), mode=info.mode,
        seed=info.seed, n_trials=info.budget, run_dir=run_dir, storage=info.storage, study_name=info.study_name,
        data=info.data, epochs=info.epochs, supernet=info.supernet, supernet_metric=info.supernet_metric or "top1",
        latency_margin=info.latency_margin, fit=0, workers=1,
        timeout_s=info.timeout_s,
        heartbeat_s=info.heartbeat_s or SearchSettings.heartbeat_s, grace_s=info.grace_s or SearchSettings.grace_s)
    search = Search(space_, settings, latency)
    search.speed = info.machine_speed
    search.fastest = {"joined": str(run_dir)}  # the parent checked the target; a worker does not redo it
    study = search.open(create=False)
    if study.user_attrs.get(RUN_MODE_ATTR) != "shared" or BUDGET_ATTR not in study.user_attrs:
        raise NasError(f"{run_dir}: study {info.study_name!r} is not shared; start the run with "
                       f"`nas search --workers N` or a server --storage")
    if may_measure and say is not None:
        say(f"this machine has the table's profile ({latency.profile.id}): a unit missing from the table would "
            f"be measured here")
    search.record_worker(str(lut or info.table), may_measure=may_measure)
    return search


@dataclass
class Launched:
    """What the parent saw of its workers."""

    elapsed_s: float
    interrupted: bool
    exits: list[tuple[int, int | None]]  # (pid, exit code)


def launch_workers(search: Search, n: int, *, progress: Progress | None = None,
                   say: Callable[[str], None] | None = None) -> SearchOutcome:
    """Start `n` `nas worker` processes on the prepared run of `search`, show study-wide progress, wait,
    and return the outcome as a single-process search would."""
    threads = max(1, search.latency.profile.threads // n)
    logs = search.run_dir / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        with open(logs / f"worker-{i}.log", "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "nas", "worker", str(search.run_dir), "--quiet", "--threads", str(threads)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    launched = _watch(search, procs, progress)
    _summarise(search, procs, logs, launched, say)
    return SearchOutcome(study=search.study, run_dir=search.run_dir, storage_url=search.storage_url,
                         stats=search.stats, elapsed_s=launched.elapsed_s, interrupted=launched.interrupted,
                         fastest=search.fastest)


def _watch(search: Search, procs: list[subprocess.Popen], progress: Progress | None) -> Launched:
    """Follow the study until every worker has exited; a stop signal asks each to stop after its trial."""
    began, asked = time.perf_counter(), False
    seen: set[int] = {t.number for t in search.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"}
    if progress:
        progress.start(int(search.study.user_attrs[BUDGET_ATTR]) - len(seen), search.stats)
    try:
        with stop_signals() as stop:
            while True:
                if stop.requested and not asked:
                    asked = _terminate(procs)
                _follow(search, seen, progress)
                if all(p.poll() is not None for p in procs):
                    break
                time.sleep(POLL_S)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for trials in flight
        asked = _terminate(procs)
        for p in procs:
            p.kill()
    finally:
        for p in procs:
            p.wait()
        _follow(search, seen, progress)
        if progress:
            progress.close(search.stats)
    return Launched(time.perf_counter() - began, asked, [(p.pid, p.returncode) for p in procs])


def _terminate(procs: list[subprocess.Popen]) -> bool:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # a worker stops after its trial in flight
    return True


def _follow(search: Search, seen: set[int], progress: Progress | None) -> None:
    stats: SearchStats = search.stats
    for t in search.study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" and t.number not in seen:
            seen.add(t.number)
            stats.add(t.values[0], all(v <= 0 for v in t.constraints.values()))
            if progress:
                progress.update(stats)


def _summarise(search: Search, procs: list[subprocess.Popen], logs: Path, launched: Launched,
               say: Callable[[str], None] | None) -> None:
    """One line per worker; a worker that refused (exit 2) before the budget was met is an error."""
    done: dict[int, int] = {}
    for t in search.study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" and "worker" in t.user_attrs:
            pid = int(str(t.user_attrs["worker"]).rsplit(":", 1)[1].split("-")[0])
            done[pid] = done.get(pid, 0) + 1
    refused = None
    for i, (pid, code) in enumerate(launched.exits):
        if say is not None:
            say(f"worker {i} (pid {pid}): exit {code}, {done.get(pid, 0)} trials; log {logs / f'worker-{i}.log'}")
        if code == 2 and refused is None:
            lines = (logs / f"worker-{i}.log").read_text(errors="replace").strip().splitlines()
            refused = lines[-1].removeprefix("error: ") if lines else f"worker {i} exited 2"
    if refused is not None and not launched.interrupted and search.stats.new == 0:
        raise NasError(f"worker refused: {refused}")


def run_worker(run_dir: str | os.PathLike, *, lut: str | os.PathLike | None = None,
               progress: Progress | None = None, space: str | os.PathLike | None = None,
               say: Callable[[str], None] | None = None) -> SearchOutcome:
    """Join the shared run in `run_dir` and score trials until the study's budget is met (or a stop
    signal); what `nas worker RUN_DIR` and the Dask recipe run."""
    search = join_run(run_dir, lut=lut, space=space, say=say)
    return search.run(progress)


__all__ = ["Launched", "join_run", "launch_workers", "run_worker", "sampler_name", "worker_latency"]
