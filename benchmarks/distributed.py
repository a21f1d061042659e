"""Benchmark: trials per second of `nas search --workers N` on PostgreSQL against the single-process default.

Each leg is one real command, timed from its own summary (the search loop's seconds) and from outside
(wall, start-up included):

    python -m nas search --space S --target-latency T --objective O --n-trials K --run-dir D
        --no-measure --quiet --fit 0 --threads THREADS [--workers N --storage URL --study-name LEG]

for every objective of --objectives (a zero-cost proxy, where workers should scale, and `macs`, where the
storage's cost shows) on the single-process default storage (no --storage, one process) and on
PostgreSQL with 1, 2 and 4 workers (--workers-list). PostgreSQL is --postgres URL, or a throwaway local
server started here and stopped at the end. Every leg scores from one latency table found through
NAS_LUT_DIR (--lut copied there, or under --quick a made-up one), with per-unit counts computed before
the clock starts, as after `nas lut build`. Per-trial storage time is the public ask/tell path of
benchmarks.storage_cost (what a live worker pays per trial) on each storage.

    python -m benchmarks.distributed --lut benchmarks/results/sandglass-t1.json [--json distributed.json]
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from benchmarks import _postgres, storage_cost
from benchmarks._common import finish, parse, parser
from benchmarks._latency import lookup_model
from nas.cache import ENV_LUT_DIR
from nas.cost import CostModel
from nas.latency import default_table_path
from nas.search.storage import storage_for
from nas.space import load_space, unique_units

QUICK = {"trials": 6, "proxy_trials": 4, "workers_list": "1,2", "storage_trials": 10}
DEFAULT_STORAGE = "journal"  # what `nas search` writes without --storage (storage_cost's backend name)
MACHINE = "a shared 2-core VM (other work may run alongside): compare legs of one run, not runs"
STORAGES = ("default", "postgres")


def command(args: Any, objective: str, storage: str, workers: int, url: str | None, run_dir: Path) -> list[str]:
    """The `nas search` command line of one leg."""
    cmd = [sys.executable, "-m", "nas", "search", "--space", args.space, "--target-latency", args.target,
           "--objective", objective, "--n-trials", str(trials_for(args, objective)), "--run-dir", str(run_dir),
           "--no-measure", "--quiet", "--fit", "0", "--threads", str(args.threads), "--seed", str(args.seed)]
    if storage == "postgres":
        cmd += ["--workers", str(workers), "--storage", url, "--study-name", run_dir.name]
    return cmd


def trials_for(args: Any, objective: str) -> int:
    return args.trials if objective == "macs" else args.proxy_trials


def complete_trials(run_dir: Path) -> int:
    """COMPLETE trials in the leg's study, read back through its run.json."""
    info = json.loads((run_dir / "run.json").read_text())
    study = optuna.load_study(study_name=info["study_name"], storage=storage_for(info["storage"]))
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def run_leg(args: Any, objective: str, storage: str, workers: int, url: str | None, work: Path,
            env: dict[str, str]) -> dict[str, Any]:
    """Run one leg's command; its figures, or SystemExit with the command's last error line."""
    run_dir = work / f"{objective}-{storage}-{workers}".replace("+", "_")
    start = time.perf_counter()
    done = subprocess.run(command(args, objective, storage, workers, url, run_dir), env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"leg {objective}/{storage}/{workers} failed (exit {done.returncode}): {last}")
    summary = json.loads((run_dir / "summary.json").read_text())
    loop = summary.get("search_seconds") or wall
    n = trials_for(args, objective)
    return {"objective": objective, "storage": storage, "workers": workers, "trials": n,
            "complete_in_study": complete_trials(run_dir), "wall_s": round(wall, 3), "loop_s": round(loop, 3),
            "trials_per_s": round(n / loop, 3)}


def storage_ms(backends: list[str], args: Any, folder: Path, url: str | None) -> dict[str, float]:
    """ms per trial of the public ask/tell path on each storage (one fresh study each)."""
    recs = storage_cost.records(args.space, args.storage_trials, args.seed)
    out = {}
    for backend in backends:
        with storage_cost.storage(backend, folder, f"cost-{backend}", url) as store:
            study = storage_cost.new_study(store, f"cost-{backend}-{time.time_ns()}")
            out[backend] = round(1e3 * storage_cost.write("ask_tell", study, store, recs, 1) / len(recs), 3)
    return out


def prepare_tables(p: Any, args: Any, lut_dir: Path) -> None:
    """The leg commands' table (--lut, or made up under --quick) and per-unit counts, in `lut_dir`."""
    lut_dir.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_LUT_DIR] = str(lut_dir)  # CostModel.persistent() and default_table_path read it
    space = load_space(args.space)
    latency = lookup_model(p, args, space)
    if latency is None:
        raise SystemExit(2)
    shutil.copyfile(latency.table.path, default_table_path(latency.profile))
    cost = CostModel.persistent()
    for unit in unique_units(space).values():
        cost.unit_counts(unit, space)
    cost.save()


def speedups(legs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Trials per second of N PostgreSQL workers over one, per objective."""
    out = {}
    for key, leg in legs.items():
        one = legs.get(f"{leg['objective']}/postgres/1")
        if leg["storage"] == "postgres" and leg["workers"] > 1 and one:
            out[key] = round(leg["trials_per_s"] / one["trials_per_s"], 2)
    return out


def build_parser() -> Any:
    p = parser(__doc__, threads=1)
    p.add_argument("--lut", help="a 1-thread latency table covering the space (`nas lut build --threads 1`); "
                   "required unless --quick")
    p.add_argument("--target", default="40ms")
    p.add_argument("--objectives", default="naswot,macs", help="comma-separated objectives (default naswot,macs)")
    p.add_argument("--storages", default="default,postgres", help="which of default,postgres to run")
    p.add_argument("--workers-list", default="1,2,4", help="worker counts of the PostgreSQL legs (default 1,2,4)")
    p.add_argument("--trials", type=int, default=400, help="trials of each macs leg")
    p.add_argument("--proxy-trials", type=int, default=60, help="trials of each proxy-objective leg")
    p.add_argument("--storage-trials", type=int, default=100, help="trials of the per-trial storage timing")
    p.add_argument("--postgres", metavar="URL", help="an existing server's database (default: start a throwaway one)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = parse(p, QUICK, argv)
    storages = [s.strip() for s in args.storages.split(",")]
    if not set(storages) <= set(STORAGES):
        p.error(f"--storages: {args.storages!r}; allowed: default, postgres")
    work = Path(tempfile.mkdtemp(prefix="nas-bench-dist-"))
    lut_dir = os.environ.get(ENV_LUT_DIR)
    try:
        return _run(p, args, storages, work)
    finally:  # the tables folder was this run's: give the caller its own back
        os.environ.pop(ENV_LUT_DIR, None) if lut_dir is None else os.environ.update({ENV_LUT_DIR: lut_dir})
        shutil.rmtree(work, ignore_errors=True)


def _run(p: Any, args: Any, storages: list[str], work: Path) -> int:
    prepare_tables(p, args, work / "lut")
    # The leg commands import this checkout's nas, wherever the benchmark is started from.
    checkout = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")]))}
    workers = [int(w) for w in args.workers_list.split(",")]
    legs: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        url = None
        if "postgres" in storages:
            url = args.postgres or stack.enter_context(_postgres.local_server())
        for objective in args.objectives.split(","):
            for storage in storages:
                for n in (workers if storage == "postgres" else [1]):
                    leg = run_leg(args, objective, storage, n, url, work, env)
                    legs[f"{objective}/{storage}/{n}"] = leg
                    print(f"{objective:>8} {storage:>8} x{n}: {leg['trials']} trials, loop {leg['loop_s']:.2f} s, "
                          f"{leg['trials_per_s']:.2f} trials/s (wall {leg['wall_s']:.1f} s, "
                          f"{leg['complete_in_study']} complete in the study)", flush=True)
        backends = [DEFAULT_STORAGE if s == "default" else s for s in storages]
        per_trial = storage_ms(backends, args, work, url)
    for key, ratio in speedups(legs).items():
        print(f"speed-up {key} over 1 worker: {ratio:.2f}x")
    print("storage ms per trial (ask/tell): " + ", ".join(f"{b} {ms:.2f}" for b, ms in per_trial.items()))
    print(f"machine: {MACHINE}")
    figures = {"space": args.space, "target": args.target, "machine": platform.processor() or platform.machine(),
               "optuna": optuna.__version__, "postgres": None if url is None else (
                   "given URL" if args.postgres else "local throwaway server"),
               "legs": legs, "speedup_over_one_worker": speedups(legs), "storage_ms_per_trial": per_trial}
    return finish(args, figures)


if __name__ == "__main__":
    sys.exit(main())
