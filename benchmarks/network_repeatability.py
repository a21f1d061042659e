"""How repeatable our end-to-end network measurement is, and what its re-timing and passes cost.

`nas lut validate`, the correction's fit, `arch stats --measure` and the winner check all time
networks with `LatencyModel.measure_networks`: each network alone between two network probe
readings, a group timed again (up to GROUP_TRIES times in all) when the two readings differ by more
than STATE_TOLERANCE, over several reshuffled passes. This benchmark times the same random networks
several times under each setting (tries, passes), the settings alternated so all share the machine's
drift, and reports per setting:

- seconds per sweep of all networks, and how many groups were timed again;
- each run's deviation from the consensus (per network, the median of every run of every setting,
  all at the table's level): mean |log| deviation and the share within 10% (|log| < log 1.1);
- the median |log ratio| between consecutive repeats of the setting.

    python -m benchmarks.network_repeatability --networks 8 --repeats 2 --settings 3:3,1:3,1:7 --json out.json
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import finish, parse, parser
from nas.latency import GROUP_TRIES, LatencyModel, open_table
from nas.space import load_space, sample
from proxies.latency import current_profile

QUICK = {"networks": 1, "repeats": 2, "settings": [(3, 1), (1, 1)]}


def settings_arg(text: str) -> list[tuple[int, int]]:
    """'3:3,1:7' -> [(3, 3), (1, 7)]: distinct (tries, passes) pairs, each at least 1."""
    out = []
    for item in text.split(","):
        try:
            tries, passes = (int(v) for v in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: expected TRIES:PASSES, e.g. 3:3") from None
        if tries < 1 or passes < 1:
            raise argparse.ArgumentTypeError(f"{item!r}: tries and passes must be at least 1")
        if (tries, passes) in out:
            raise argparse.ArgumentTypeError(f"{item!r}: given twice")
        out.append((tries, passes))
    return out


def deviation_from_consensus(runs: np.ndarray) -> np.ndarray:
    """Per run and network, log(figure) - log(the network's median over all runs); `runs` is runs x networks."""
    logs = np.log(runs)
    return logs - np.median(logs, axis=0)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, threads=2)
    p.add_argument("--backend", default="torch", choices=["torch", "torchscript", "onnxruntime"])
    p.add_argument("--networks", type=int, default=8, help="random networks of the space timed")
    p.add_argument("--repeats", type=int, default=2, help="times each setting measures all networks (>= 2)")
    p.add_argument("--settings", type=settings_arg, default=f"{GROUP_TRIES}:3,1:3,1:7",
                   help=f"TRIES:PASSES pairs compared (default: {GROUP_TRIES}:3, as shipped, then 1:3 and 1:7)")
    args = parse(p, QUICK, argv)
    if args.repeats < 2:
        p.error("--repeats must be at least 2")
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    profile = current_profile(args.backend, threads=args.threads)
    rng = random.Random(args.seed)
    archs = [sample(space, rng) for _ in range(args.networks)]
    with tempfile.TemporaryDirectory() as folder:
        model = LatencyModel(open_table(profile, Path(folder) / "table.json"))
        model.ensure_levels()
        runs: dict[tuple[int, int], list[dict]] = {s: [] for s in args.settings}
        for repeat in range(args.repeats):
            for tries, passes in args.settings if repeat % 2 == 0 else args.settings[::-1]:
                model.group_tries, retimed = tries, model.retimed_groups
                start = time.monotonic()
                ms = model.measure_networks(space, archs, passes=passes)
                run = {"ms": ms, "seconds": time.monotonic() - start, "retimed": model.retimed_groups - retimed,
                       "speed": model.last_speed}
                runs[(tries, passes)].append(run)
                print(f"  tries {tries}, passes {passes}, repeat {repeat + 1}: {run['seconds']:.0f} s, "
                      f"{run['retimed']} groups re-timed, machine {run['speed']:.2f}x the level", flush=True)

    # Rows in settings order, `repeats` runs each: setting k's runs are rows k*repeats .. (k+1)*repeats - 1.
    deviation = deviation_from_consensus(np.array([r["ms"] for s in args.settings for r in runs[s]]))
    rows = []
    for k, s in enumerate(args.settings):
        mine = deviation[k * args.repeats:(k + 1) * args.repeats]
        logs = np.log([r["ms"] for r in runs[s]])
        rows.append({"tries": s[0], "passes": s[1],
                     "seconds_per_sweep": float(np.median([r["seconds"] for r in runs[s]])),
                     "retimed_groups": [r["retimed"] for r in runs[s]],
                     "machine_speed": [r["speed"] for r in runs[s]],
                     "mean_abs_log_deviation": float(np.mean(np.abs(mine))),
                     "within_10pct_of_consensus": float(np.mean(np.abs(mine) < np.log(1.1))),
                     "median_abs_log_between_repeats": float(np.median(np.abs(np.diff(logs, axis=0))))})
    figures = {"space": args.space, "backend": args.backend, "threads": args.threads, "networks": args.networks,
               "repeats": args.repeats, "settings": rows}
    print(f"{args.networks} networks, {args.repeats} repeats per setting")
    print("tries passes   s/sweep  re-timed   |log dev|  within 10%  |log| between repeats")
    for r in rows:
        print(f"  {r['tries']:3d}  {r['passes']:4d}   {r['seconds_per_sweep']:7.0f}  {sum(r['retimed_groups']):8d}   "
              f"{r['mean_abs_log_deviation']:8.3f}  {r['within_10pct_of_consensus']:9.0%}   "
              f"{r['median_abs_log_between_repeats']:.3f}")
    return finish(args, figures)


if __name__ == "__main__":
    sys.exit(main())
