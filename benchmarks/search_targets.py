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

import numpy as np
import torch

from benchmarks._common import finish, parse, parser, timed
from benchmarks._latency import at_level, beside_probe, network_level, referee_callable
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
    best, summary = result.summary["best"], result.summary
    speed = summary.get("machine_speed_at_start") or 1.0
    referee = referee_callable("torch", space, result.best_arch, folder, f"winner{target:g}", args.threads,
                               args.referee_seconds)
    level = network_level(model)
    timings, beside = zip(*(beside_probe(model, referee) for _ in range(args.referee_passes)))
    raw = float(np.median(timings))
    level_ms = at_level(level, timings, beside)
    row = {"target_ms": target, "search_minutes": minutes, "trial": best["number"],
           "speed_at_start": summary.get("machine_speed_at_start"), "check_level_ms": best.get("measured_level_ms"),
           "predicted_ms": best["predicted_latency_ms"], "margin": summary.get("latency_margin"),
           "check_ms": best.get("measured_latency_ms"), "check_raw_ms": best.get("measured_raw_ms"),
           "check_meets": best.get("meets_target"), "winner_note": summary.get("winner_note"),
           "referee_ms": raw, "referee_level_ms": level_ms,
           "speed_during_referee": float(np.median(beside)) / level,
           # Both at the table's level: the prediction without the search's speed factor, the referee
           # rescaled by the network probe beside it; what the search meant by the target is
           # target / speed at start at the level, so "used" there is referee_level x speed / target.
           "predicted_level_ms": best["predicted_latency_ms"] / speed,
           "error_at_level": best["predicted_latency_ms"] / speed / level_ms - 1,
           "used_at_search_speed": level_ms * speed / target,
           "error_vs_referee_level": best["predicted_latency_ms"] / level_ms - 1,
           "error_vs_referee_raw": best["predicted_latency_ms"] / raw - 1,
           "used_level": level_ms / target, "used_raw": raw / target,
           "entries": len(model.table), "correction": model.table.correction.to_dict()
           if model.table.correction else None}
    print(f"target {target:g} ms: trial {row['trial']} predicted {row['predicted_ms']:.2f} ms (machine "
          f"{row['speed_at_start']:.2f}x the level), check {row['check_ms']:.2f} ms "
          f"({'meets' if row['check_meets'] else 'MISSES'}); referee {raw:.2f} ms as timed "
          f"({row['error_vs_referee_raw']:+.1%} off the prediction, uses {row['used_raw']:.0%} of the target; "
          f"machine {row['speed_during_referee']:.2f}x the level), {level_ms:.2f} ms at the level "
          f"({row['error_at_level']:+.1%} off the prediction at the level, uses {row['used_at_search_speed']:.0%} "
          f"of the target at the search's speed); search {minutes:.1f} min", flush=True)
    return row


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
        print(f"at the table's level: {sum(r['used_at_search_speed'] <= 1 for r in rows)}/{len(rows)} meet their "
              f"target at the search's machine speed, using {min(r['used_at_search_speed'] for r in rows):.0%}-"
              f"{max(r['used_at_search_speed'] for r in rows):.0%} of it; "
              f"{sum(abs(r['error_at_level']) <= 0.10 for r in rows)}/{len(rows)} within 10% of their prediction")
    return finish(args, {"space": args.space, "trials": args.trials, "rows": rows})


if __name__ == "__main__":
    sys.exit(main())
