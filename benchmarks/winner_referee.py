"""Benchmark: a finished search's winner timed by an independent referee, against what the search said.

Takes a run folder (`make run` writes runs/sandglass-25ms/), loads the `best_model.py` it
exported, exactly the file a user ships, and times it with
`torch.utils.benchmark.Timer.blocked_autorange` in `--passes` passes, each with the network probe
read right before and after, on the run's own table and thread count, in a process that keeps freed
memory (the definition of latency, proxies.latency.allocator). `--default-passes` more timings, each
in a fresh process on glibc's default malloc settings, say what a first plain try reads without
that. Prints the prediction, the winner check's measurement and the referee's timing, as timed and
at the table's level, and the share of the target the winner uses: the `make run` target of the
README (the winner's plain timing within 10% of its prediction, and meeting the target) is read off
this line.

    python -m benchmarks.winner_referee runs/sandglass-25ms --json out.json
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from benchmarks._common import QUICK_SPACE, finish, parse, parser
from benchmarks._latency import default_allocator_timing_ms, exported_file_referee, referee_figures
from nas import api
from nas.errors import NasError
from nas.report import RunInfo

QUICK = {"passes": 2, "seconds": 0.05, "default_passes": 1}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, space=None, seed=False)
    p.add_argument("run_dir", nargs="?", help="a folder `nas search` wrote (with summary.json and best_model.py); "
                                              "under --quick without one, a 10-trial search on the quick space")
    p.add_argument("--passes", type=int, default=7, help="referee timings, each beside the network probe")
    p.add_argument("--seconds", type=float, default=0.5, help="blocked_autorange's min_run_time per pass")
    p.add_argument("--default-passes", type=int, default=3,
                   help="timings in a fresh process on glibc's default malloc settings (0: none)")
    args = parse(p, QUICK, argv)
    if args.run_dir is None:
        if not args.quick:
            p.error("the following arguments are required: run_dir")
        args.run_dir = _quick_run()
    run_dir = Path(args.run_dir)
    try:
        info = RunInfo.load(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
    except (NasError, OSError, ValueError) as exc:
        p.error(str(exc))
    if info.backend != "torch" or not summary.get("best") or not (run_dir / "best_model.py").is_file() \
            or not (run_dir / "best.yaml").is_file():
        p.error(f"{run_dir}: no torch-backend winner with best.yaml and best_model.py to time")
    torch.set_num_threads(info.threads)
    model = api.latency_model(info.backend, info.threads, info.batch_size, info.table)
    fixed = yaml.safe_load((run_dir / "best.yaml").read_text())  # the winner as a fixed space: its input size
    shape = (fixed["in_channels"], fixed["resolution"], fixed["resolution"])
    x = torch.randn(info.batch_size, *shape, generator=torch.Generator().manual_seed(0))
    referee = exported_file_referee(run_dir / "best_model.py", x, info.threads, args.seconds)
    row = referee_figures(model, summary, referee, args.passes)
    default = [default_allocator_timing_ms(run_dir / "best_model.py", tuple(x.shape), info.threads, args.seconds)
               for _ in range(args.default_passes)]
    if default:
        row["default_allocator_ms"] = float(statistics.median(default))
        row["default_allocator_timings_ms"] = default
        print(f"  fresh processes on glibc's default malloc: {row['default_allocator_ms']:.2f} ms "
              f"({row['default_allocator_ms'] / row['referee_ms']:.2f}x the referee; {len(default)} timings "
              f"{min(default):.2f}-{max(default):.2f} ms)", flush=True)
    return finish(args, {"run_dir": str(run_dir), "passes": args.passes, **row})


def _quick_run() -> str:
    """A 10-trial search of the quick space into a temporary folder (quick mode without a run folder)."""
    folder = Path(tempfile.mkdtemp(prefix="nas-referee-"))
    api.search(QUICK_SPACE, "50ms", n_trials=10, seed=0, run_dir=folder / "run",
               latency=api.latency_model("torch", 1, 1, folder / "table.json"))
    return str(folder / "run")


if __name__ == "__main__":
    sys.exit(main())
