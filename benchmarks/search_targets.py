"""Benchmark: do searches' winners meet their targets, and use them, when timed by an independent referee?

From an empty latency cache (a temporary $NAS_LUT_DIR), runs one `nas search` per target, in
order, sharing the cache as a user's machine would: the first search fills the table on first
use and fits its correction, the later ones extend it. Each winner's exported `best_model.py`
is then timed with `torch.utils.benchmark.Timer.blocked_autorange`, with the probe read right
before and after, in `--referee-passes` passes. Figures per target: the prediction, the winner
check's measurement, the referee's timing as timed and at the table's level, whether it meets
the target and what share of the target it uses.

    python benchmarks/search_targets.py --targets 20 25 30 35 40 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from latency_truth import referee_callable  # noqa: E402  (this folder)
from nas import api  # noqa: E402
from nas.latency import model_for  # noqa: E402
from nas.search.run import TargetUnreachableError  # noqa: E402
from nas.space import load_space  # noqa: E402
from proxies.latency.reference import level_factor  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="search_spaces/sandglass.yaml")
    parser.add_argument("--targets", type=float, nargs="+", default=[20, 25, 30, 35, 40], help="targets in ms")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--referee-passes", type=int, default=5)
    parser.add_argument("--referee-seconds", type=float, default=0.5)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = Path(tempfile.mkdtemp(prefix="nas-targets-"))
    os.environ["NAS_LUT_DIR"] = str(folder / "cache")
    space = load_space(args.space)
    rows = []
    for target in args.targets:
        model = model_for("torch", args.threads)
        start = time.perf_counter()
        try:
            result = api.search(args.space, f"{target}ms", n_trials=args.trials, seed=args.seed,
                                run_dir=folder / f"run-{target:g}ms", latency=model)
        except TargetUnreachableError as exc:
            print(f"target {target:g} ms: {exc}", flush=True)
            continue
        minutes = (time.perf_counter() - start) / 60
        best, summary = result.summary["best"], result.summary
        arch = result.best_arch
        referee = referee_callable("torch", space, arch, folder, f"winner{target:g}", args.threads,
                                   args.referee_seconds)
        level = model.table.reference.ms
        timings, beside = [], []
        for _ in range(args.referee_passes):
            before = model.probe_ms()
            timings.append(referee())
            beside.append((before * model.probe_ms()) ** 0.5)
        raw = float(np.median(timings))
        at_level = float(np.median([t * level_factor(level, b) for t, b in zip(timings, beside)]))
        row = {"target_ms": target, "search_minutes": minutes, "trial": best["number"],
               "speed_at_start": summary.get("machine_speed_at_start"), "check_level_ms": best.get("measured_level_ms"),
               "predicted_ms": best["predicted_latency_ms"], "margin": summary.get("latency_margin"),
               "check_ms": best.get("measured_latency_ms"), "check_raw_ms": best.get("measured_raw_ms"),
               "check_meets": best.get("meets_target"), "winner_note": summary.get("winner_note"),
               "referee_ms": raw, "referee_level_ms": at_level,
               "speed_during_referee": float(np.median(beside)) / level,
               "error_vs_referee_level": best["predicted_latency_ms"] / at_level - 1,
               "error_vs_referee_raw": best["predicted_latency_ms"] / raw - 1,
               "used_level": at_level / target, "used_raw": raw / target,
               "entries": len(model.table), "correction": model.table.correction.to_dict()
               if model.table.correction else None}
        rows.append(row)
        print(f"target {target:g} ms: trial {row['trial']} predicted {row['predicted_ms']:.2f} ms (machine "
              f"{row['speed_at_start']:.2f}x the level), check {row['check_ms']:.2f} ms "
              f"({'meets' if row['check_meets'] else 'MISSES'}); referee {raw:.2f} ms as timed "
              f"({row['error_vs_referee_raw']:+.1%} off the prediction, uses {row['used_raw']:.0%} of the target; "
              f"machine {row['speed_during_referee']:.2f}x the level), {at_level:.2f} ms at the level; "
              f"search {minutes:.1f} min", flush=True)
    if rows:
        print(f"{sum(r['used_raw'] <= 1 for r in rows)}/{len(rows)} winners meet their target in the referee's plain "
              f"timing, using {min(r['used_raw'] for r in rows):.0%}-{max(r['used_raw'] for r in rows):.0%} of it; "
              f"{sum(abs(r['error_vs_referee_raw']) <= 0.10 for r in rows)}/{len(rows)} within 10% of their prediction")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"space": args.space, "trials": args.trials, "rows": rows}, indent=2)
                                   + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
