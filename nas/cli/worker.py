"""`nas worker RUN_DIR`: join a shared run from this or another machine and score trials until its budget is
met; with `--dask`, start N such workers as tasks on a Dask cluster instead (the `dask` extra)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from nas.cli._common import say
from nas.cli.search import BarProgress, LogProgress
from nas.errors import NasError


def _worker(args: argparse.Namespace) -> int:
    if args.dask is not None:
        return _on_dask(args)
    if args.n is not None:
        raise NasError("-n: starts N workers as Dask tasks and needs --dask ADDRESS (or --dask local); for N local "
                       "processes use `nas search --workers N`")
    from optuna.trial import TrialState

    from nas import api

    if args.threads is not None:
        if args.threads < 1:
            raise NasError(f"--threads: {args.threads} is not a positive number of threads")
        import torch

        torch.set_num_threads(args.threads)
    search = api.join_run(args.run_dir, lut=args.lut, space=args.space, say=say)
    display = LogProgress(search.settings.objective) if args.quiet else BarProgress(search.settings.objective,
                                                                                     search.latency.table)
    outcome = search.run(display)
    complete = len(outcome.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    print(f"worker {search.me}: {outcome.stats.new} trials in {outcome.elapsed_s:.1f} s ({complete} COMPLETE in "
          f"the study)", file=sys.stderr)
    return 130 if outcome.interrupted else 0


def _on_dask(args: argparse.Namespace) -> int:
    from nas.launch import launch

    address = None if args.dask == "local" else args.dask
    results = launch(args.run_dir, 1 if args.n is None else args.n, address=address, lut=args.lut)
    where = address or "a local Dask cluster"
    print(f"{len(results)} workers of {args.run_dir} finished on {where}", file=sys.stderr)
    return 0


def register(groups: Any) -> None:
    p = groups.add_parser(
        "worker", help="join a shared run (started with nas search --workers N or a server --storage)",
        description="Open RUN_DIR's study (run.json: storage, study, space, objective, target, latency table) and "
                    "ask and tell trials on it with the other workers until the study's trial budget is met. "
                    "Ctrl-C or SIGTERM stops this worker after its trial in flight; the others go on. With "
                    "--dask, submit N such workers as tasks to a Dask scheduler instead and wait for them (Dask "
                    "places them: dask-jobqueue covers Slurm and PBS, dask-kubernetes Kubernetes); RUN_DIR must "
                    "then be the same path on every Dask worker and its study on a server they all reach.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--lut", metavar="FILE", help="the run's latency table on this machine (default: the path "
                   "run.json records); its profile must be the run's")
    p.add_argument("--space", metavar="YAML", help="the run's space file on this machine (default: the path run.json "
                   "records); it must be the same space")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads for scoring trials (default: torch's "
                   "own); the latency profile does not change")
    p.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--dask", metavar="ADDRESS", help="run the workers as Dask tasks on this scheduler, e.g. "
                   "tcp://10.0.0.5:8786, or `local` for a LocalCluster of N one-thread processes here "
                   "(pip install -e '.[dask]')")
    p.add_argument("-n", type=int, metavar="N", help="with --dask: number of workers (Dask tasks; default 1)")
    p.set_defaults(func=_worker)
