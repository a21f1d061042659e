"""`nas workers`: start N search workers of a run folder as Dask tasks (the `dask` extra)."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def _workers(args: argparse.Namespace) -> int:
    from nas.launch import launch

    results = launch(args.run_dir, args.n, address=args.dask, lut=args.lut)
    where = args.dask or "a local Dask cluster"
    print(f"{len(results)} workers of {args.run_dir} finished on {where}", file=sys.stderr)
    return 0


def register(groups: Any) -> None:
    p = groups.add_parser(
        "workers", help="start N workers of a run folder on a Dask cluster (pip install -e '.[dask]')",
        description="Submit N tasks to a Dask scheduler, each running one `nas worker RUN_DIR` in its Dask "
                    "worker process, and wait for all of them. Dask places them (dask-jobqueue covers Slurm "
                    "and PBS, dask-kubernetes Kubernetes); without --dask a local cluster of N processes runs "
                    "here. RUN_DIR must be the same path on every Dask worker, and its study on a server they "
                    "all reach (--storage postgresql+psycopg://...).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by `nas search --storage URL`")
    p.add_argument("-n", type=int, required=True, metavar="N", help="number of workers (Dask tasks)")
    p.add_argument("--dask", metavar="ADDRESS", help="the Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                   "(default: a LocalCluster of N one-thread processes on this machine)")
    p.add_argument("--lut", metavar="FILE", help="the shared latency table every worker scores from "
                   "(a path each Dask worker can read; default: the run's own)")
    p.set_defaults(func=_workers)
