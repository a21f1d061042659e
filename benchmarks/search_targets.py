"""Benchmark: do searches' winners meet their targets, and use them, when timed by an independent referee?

From an empty latency cache (a temporary $NAS_LUT_DIR), runs one `nas search` per target, in
order, sharing the cache as a user's machine would: the first search fills the table on first
use and fits its correction, the later ones extend it. Each winner's exported `best_model.py`
is then timed with `torch.utils.benchmark.Timer.blocked_autorange`, with the probe read right
before and after, in `--referee-passes` passes. Figures per target: the prediction, the winner
check's measurement, the referee's timing as timed and at the table's level, whether it meets
the target and what share of the target it uses.

    python -m benchmarks.search_targets --targets 20 25 30 35 40 --json out.json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import finish, parse, parser, timed
from benchmarks._latency import referee_callable, referee_figures
from nas import api
from nas.latency import model_for
from nas.search.run import TargetUnreachableError
from nas.space import SearchSpace, load_space

QUICK = {"targets": [25.0], "trials": 10, "threads": 1, "referee_passes": 2, "referee_seconds": 0.05}


def one_target(args: argparse.Namespace, space: SearchSpace, target: float, folder: Path) -> dict[str, Any] | None:
    """One search at `target` ms on the shared cache and its winner timed by the referee; None (after
    saying why) when no architecture can meet the target."""
    model = model_for("torch", args.threads)
    try:
        seconds, result = timed(api.search, args.space, f"{target}ms", n_trials=args.trials, seed=args.seed,
                                run_dir=folder / f"run-{target:g}ms", latency=model)
    except TargetUnreachableError as exc:
        print(f"target {target:g} ms: {exc}", flush=True)
        return None
    minutes = seconds / 60
    referee = referee_callable("torch", space, result.best_arch, folder, f"winner{target:g}", args.threads,
                               args.referee_seconds)
    print(f"target {target:g} ms: search {minutes:.1f} min", flush=True)
    recalibrated = (result.summary.get("correction_recalibrated") or {}).get("factor")
    return {"search_minutes": minutes, "correction_recalibrated": recalibrated,
            **referee_figures(model, result.summary, referee, args.referee_passes)}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, threads=2)
    p.add_argument("--targets", type=float, nargs="+", default=[20, 25, 30, 35, 40], help="targets in ms")
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--referee-passes", type=int, default=5)
    p.add_argument("--referee-seconds", type=float, default=0.5)
    args = parse(p, QUICK, argv)
    torch.set_num_threads(args.threads)

    folder = Path(tempfile.mkdtemp(prefix="nas-targets-"))
    os.environ["NAS_LUT_DIR"] = str(folder / "cache")
    space = load_space(args.space)
    rows = [row for target in args.targets if (row := one_target(args, space, target, folder)) is not None]
    if rows:
        print(f"{sum(r['used_raw'] <= 1 for r in rows)}/{len(rows)} winners meet their target in the referee's plain "
              f"timing, using {min(r['used_raw'] for r in rows):.0%}-{max(r['used_raw'] for r in rows):.0%} of it; "
              f"{sum(abs(r['error_vs_referee_raw']) <= 0.10 for r in rows)}/{len(rows)} within 10% of their prediction")
        at_check = [r for r in rows if r["error_at_check_vs_referee_raw"] is not None]
        print(f"predicted at the check's speed: {sum(abs(r['error_at_check_vs_referee_raw']) <= 0.10 for r in at_check)}/"
              f"{len(at_check)} within 10% of the referee as timed")
        print(f"at the table's level: {sum(r['used_at_search_speed'] <= 1 for r in rows)}/{len(rows)} meet their "
              f"target at the search's machine speed, using {min(r['used_at_search_speed'] for r in rows):.0%}-"
              f"{max(r['used_at_search_speed'] for r in rows):.0%} of it; "
              f"{sum(abs(r['error_at_level']) <= 0.10 for r in rows)}/{len(rows)} within 10% of their prediction")
    return finish(args, {"space": args.space, "trials": args.trials, "rows": rows})


if __name__ == "__main__":
    sys.exit(main())
