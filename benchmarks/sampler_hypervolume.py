"""Benchmark: hypervolume of the feasible (objective, latency) front after N trials, per sampler and seed.

Each sampler runs the same search (space, warm table, objective, target) for
several seeds; the hypervolume is taken against the reference point
(objective 0, latency = target), in MMACs x ms, and reported as a mean over
seeds and as a ratio to random search's mean. Samplers are run interleaved
by seed so a slow spell of the machine does not land on one sampler.
Under --quick without --lut the table has made-up entries.

    python -m benchmarks.sampler_hypervolume --lut benchmarks/results/sandglass-t2.json [--trials 300]
        [--seeds 3] [--samplers random,tpe,nsga2,nsga3,qmc,auto] [--json out.json]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks._common import finish, parse, parser, timed
from benchmarks._latency import lookup_model
from nas import api
from nas.cost import CostModel
from nas.search import SearchSettings, hypervolume, parse_latency, trials_frame
from nas.space import load_space

QUICK = {"trials": 8, "seeds": 1, "threads": 1}


def run_once(space, latency, cost, sampler: str, seed: int, trials: int, target_ms: float, work: Path) -> dict:
    settings = SearchSettings(target_ms=target_ms, sampler=sampler, seed=seed, n_trials=trials,
                              run_dir=work / f"{sampler}-{seed}")

    def search():
        return api.prepare_search(space, settings, latency, cost).run()

    seconds, outcome = timed(search)
    frame = trials_frame(outcome.study, space)
    feasible = frame[frame["feasible"]]
    hv = hypervolume(feasible["objective"].to_numpy(float) / 1e6, feasible["predicted_latency_ms"].to_numpy(float),
                     0.0, target_ms)
    return {"sampler": sampler, "seed": seed, "hypervolume": hv, "n_feasible": len(feasible),
            "best_mmacs": float(feasible["objective"].max() / 1e6) if len(feasible) else None, "seconds": seconds}


def summarise(runs: list[dict], samplers: list[str]) -> dict[str, dict]:
    """Per sampler: mean and stdev of the hypervolume over seeds, median seconds, and the ratio to random."""
    table = {}
    for sampler in samplers:
        hv = [r["hypervolume"] for r in runs if r["sampler"] == sampler]
        secs = [r["seconds"] for r in runs if r["sampler"] == sampler]
        table[sampler] = {"mean_hv": statistics.mean(hv), "stdev_hv": statistics.stdev(hv) if len(hv) > 1 else 0.0,
                          "median_seconds": statistics.median(secs)}
    base = table.get("random", {}).get("mean_hv")
    for row in table.values():
        row["vs_random"] = row["mean_hv"] / base if base else None
    return table


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, seed=False, threads=2)
    p.add_argument("--lut", help="a latency table for this machine covering the space; required unless --quick")
    p.add_argument("--target", default="40ms")
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--samplers", default="random,tpe,nsga2,nsga3,qmc,auto")
    args = parse(p, QUICK, argv)

    space = load_space(args.space)
    latency = lookup_model(p, args, space)
    if latency is None:
        return 2
    cost = CostModel.persistent()
    target_ms = parse_latency(args.target)
    work = Path(tempfile.mkdtemp(prefix="nas-hv-"))
    samplers = args.samplers.split(",")
    runs = []
    for seed in range(args.seeds):
        for sampler in samplers:
            r = run_once(space, latency, cost, sampler, seed, args.trials, target_ms, work)
            runs.append(r)
            best = "-" if r["best_mmacs"] is None else f"{r['best_mmacs']:.0f}"
            print(f"{sampler:>7} seed {seed}: HV {r['hypervolume']:9.1f}  feasible {r['n_feasible']:4d}  "
                  f"best {best} MMACs  {r['seconds']:.1f} s", flush=True)
    cost.save()
    table = summarise(runs, samplers)
    print(f"\n{args.trials} trials, {args.seeds} seeds, target {target_ms:g} ms, HV in MMACs x ms vs (0, target):")
    print(f"{'sampler':>8} {'mean HV':>10} {'stdev':>8} {'vs random':>10} {'median s':>9}")
    for sampler, row in table.items():
        rel = "-" if row["vs_random"] is None else f"{row['vs_random']:.3f}"
        print(f"{sampler:>8} {row['mean_hv']:>10.1f} {row['stdev_hv']:>8.1f} {rel:>10} {row['median_seconds']:>9.1f}")
    return finish(args, {"space": args.space, "trials": args.trials, "seeds": args.seeds, "target_ms": target_ms,
                         "table": table, "runs": runs})


if __name__ == "__main__":
    sys.exit(main())
