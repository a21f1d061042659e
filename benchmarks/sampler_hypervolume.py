"""Benchmark: hypervolume of the feasible (objective, latency) front after N trials, per sampler and seed.

Each sampler runs the same search (space, warm table, objective, target) for
several seeds; the hypervolume is taken against the reference point
(objective 0, latency = target), in MMACs x ms, and reported as a mean over
seeds and as a ratio to random search's mean. Samplers are run interleaved
by seed so a slow spell of the machine does not land on one sampler.

    python benchmarks/sampler_hypervolume.py --lut benchmarks/results/sandglass-t2.json [--trials 300]
        [--seeds 3] [--samplers random,tpe,nsga2,nsga3,qmc,auto] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas import api  # noqa: E402
from nas.cost import CostModel  # noqa: E402
from nas.search import SearchSettings, hypervolume, trials_frame  # noqa: E402
from nas.search.target import parse_latency  # noqa: E402
from nas.space import load_space, unique_units  # noqa: E402


def run_once(space, latency, cost, sampler: str, seed: int, trials: int, target_ms: float, work: Path) -> dict:
    settings = SearchSettings(target_ms=target_ms, sampler=sampler, seed=seed, n_trials=trials,
                              run_dir=work / f"{sampler}-{seed}")
    start = time.perf_counter()
    search = api.prepare_search(space, settings, latency, cost)
    outcome = search.run()
    seconds = time.perf_counter() - start
    frame = trials_frame(outcome.study, space)
    feasible = frame[frame["feasible"]]
    hv = hypervolume(feasible["objective"].to_numpy(float) / 1e6, feasible["predicted_latency_ms"].to_numpy(float),
                     0.0, target_ms)
    return {"sampler": sampler, "seed": seed, "hypervolume": hv, "n_feasible": len(feasible),
            "best_mmacs": float(feasible["objective"].max() / 1e6) if len(feasible) else None, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="search_spaces/sandglass.yaml")
    parser.add_argument("--lut", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", default="40ms")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", default="random,tpe,nsga2,nsga3,qmc,auto")
    parser.add_argument("--json")
    args = parser.parse_args()

    space = load_space(args.space)
    latency = api.latency_model("torch", args.threads, 1, args.lut, measure_missing=False)
    if latency.missing(space, list(unique_units(space).values())):
        print(f"{args.lut} does not cover {args.space}; build the table first", file=sys.stderr)
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
            print(f"{sampler:>7} seed {seed}: HV {r['hypervolume']:9.1f}  feasible {r['n_feasible']:4d}  "
                  f"best {r['best_mmacs']:.0f} MMACs  {r['seconds']:.1f} s", flush=True)
    cost.save()
    table = {}
    for sampler in samplers:
        hv = [r["hypervolume"] for r in runs if r["sampler"] == sampler]
        secs = [r["seconds"] for r in runs if r["sampler"] == sampler]
        table[sampler] = {"mean_hv": statistics.mean(hv), "stdev_hv": statistics.stdev(hv) if len(hv) > 1 else 0.0,
                          "median_seconds": statistics.median(secs)}
    base = table.get("random", {}).get("mean_hv")
    print(f"\n{args.trials} trials, {args.seeds} seeds, target {target_ms:g} ms, HV in MMACs x ms vs (0, target):")
    print(f"{'sampler':>8} {'mean HV':>10} {'stdev':>8} {'vs random':>10} {'median s':>9}")
    for sampler, row in table.items():
        rel = f"{row['mean_hv'] / base:.3f}" if base else "-"
        row["vs_random"] = row["mean_hv"] / base if base else None
        print(f"{sampler:>8} {row['mean_hv']:>10.1f} {row['stdev_hv']:>8.1f} {rel:>10} {row['median_seconds']:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"space": args.space, "trials": args.trials, "seeds": args.seeds,
                                               "target_ms": target_ms, "table": table, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
