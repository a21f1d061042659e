"""Benchmark: `nas search` against the loop a user would write by hand, same sampler, seed and trial count.

Ours: NSGA-II over the space's decisions, MACs from cached per-unit fvcore
counts, latency from a warm table, finished trials batched into the run folder's journal file (study.journal).
By hand: the same Optuna sampler on an SQLite study, and per trial the
network is built, counted with fvcore as a whole and timed end to end.
Both run in this process one after the other; the ratio is per trial.
A separate run (after the table and the per-unit counts
cover the space, as `nas lut build` leaves them) gives the wall time of a full `--trials` search (the 60 s
target), and the winner's end-to-end measurement is checked against the
target. Under --quick without --lut the table has made-up entries.

    python -m benchmarks.search_speed --lut benchmarks/results/sandglass-t2.json [--trials 1000]
        [--baseline-trials 40] [--target 40ms] [--json benchmarks/results/search_speed.json]
"""
from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

import optuna
import torch

from benchmarks._common import finish, parse, parser, timed
from benchmarks._latency import lookup_model
from nas import api
from nas.builder import build
from nas.cost import CostModel
from nas.search import parse_latency
from nas.space import decisions, load_space, plan, unique_units
from proxies.flops import count_module
from proxies.latency import measure_module

QUICK = {"trials": 20, "baseline_trials": 3, "threads": 1}


def hand_written_loop(space, latency, target_ms: float, n: int, seed: int, storage: str) -> float:
    """What a user writes without the toolkit: build, fvcore the whole model, time it, every trial."""
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=seed))
    names = [(d.name, list(d.choices)) for d in decisions(space)]

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        values = {name: trial.suggest_categorical(name, choices) for name, choices in names}
        model = build(space, values)
        shape = plan(space, values).input_shape
        macs = count_module(model, (1, *shape)).macs
        ms = measure_module(model, shape, latency.profile, copy=False).median_ms
        trial.set_constraint("latency_ms", ms - target_ms)
        return float(macs), ms

    return timed(study.optimize, objective, n_trials=n)[0]


def ours(space_file, latency, cost, target: str, n: int, seed: int, run_dir: Path, measure: bool) -> tuple[float, dict]:
    seconds, result = timed(api.search, space_file, target, n_trials=n, sampler="nsga2", seed=seed, run_dir=run_dir,
                            latency=latency, cost=cost, measure=measure)
    return seconds, result.summary


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, threads=2)
    p.add_argument("--lut", help="a latency table for this machine covering the space "
                   "(`nas lut build --space SPACE --out FILE`); required unless --quick")
    p.add_argument("--target", default="40ms")
    p.add_argument("--trials", type=int, default=1000, help="trials of the timed full search")
    p.add_argument("--baseline-trials", type=int, default=40, help="trials of each side of the ratio")
    args = parse(p, QUICK, argv)
    torch.set_num_threads(args.threads)

    space = load_space(args.space)
    latency = lookup_model(p, args, space)
    if latency is None:
        return 2
    target_ms = parse_latency(args.target)
    cost = CostModel.persistent()
    work = Path(tempfile.mkdtemp(prefix="nas-bench-"))
    # "Warm" = the table and the per-unit counts cover the space, as after `nas lut build` (not timed).
    for unit in unique_units(space).values():
        cost.unit_counts(unit, space)
    cost.save()

    full_s, summary = ours(args.space, latency, cost, args.target, args.trials, args.seed, work / "full", measure=True)
    print(f"ours: {args.trials} NSGA-II trials, journal file, warm table, report with measured winner: {full_s:.1f} s "
          f"(search loop {summary['search_seconds']:.1f} s)")
    best = summary["best"] or {}
    print(f"winner: trial {best.get('number')}, predicted {best.get('predicted_latency_ms', float('nan')):.2f} ms, "
          f"measured {best.get('measured_latency_ms') or float('nan'):.2f} ms, target {target_ms:g} ms, "
          f"meets: {best.get('meets_target')}")

    n = args.baseline_trials
    small_s, _ = ours(args.space, latency, cost, args.target, n, args.seed, work / "small", measure=False)
    hand_s = hand_written_loop(space, latency, target_ms, n, args.seed, f"sqlite:///{work / 'hand.db'}")
    ratio = hand_s / small_s
    print(f"equal trial counts ({n}, same sampler and seed): ours {small_s:.2f} s, by hand {hand_s:.1f} s: "
          f"{ratio:.0f}x; per trial ours {1000 * summary['search_seconds'] / args.trials:.1f} ms (1000-trial loop) "
          f"vs by hand {1000 * hand_s / n:.0f} ms: {hand_s / n / (summary['search_seconds'] / args.trials):.0f}x")
    figures = {
        "space": args.space, "machine": platform.processor() or platform.machine(), "threads": args.threads,
        "torch": torch.__version__, "optuna": optuna.__version__, "target_ms": target_ms, "trials": args.trials,
        "full_search_s": full_s, "search_loop_s": summary["search_seconds"], "winner": best,
        "equal_trials": n, "ours_equal_s": small_s, "hand_equal_s": hand_s, "ratio_equal_trials": ratio,
        "per_trial_ratio_vs_full_loop": hand_s / n / (summary["search_seconds"] / args.trials),
        "n_feasible": summary["n_feasible"], "pareto_size": summary["pareto_size"],
    }
    return finish(args, figures, default=str)


if __name__ == "__main__":
    sys.exit(main())
