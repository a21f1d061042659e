"""Benchmark: time to predict a new candidate's latency from a warm table.

A search asks for one prediction per new candidate, so this times exactly
that: each repeat loads the space afresh (an empty planner memo), predicts
`--warm` random candidates as the start of a search would, then times
`--candidates` further new ones, each sampled just before it is timed (as a
sampler hands it over). Prints the median per repeat and their median.

Timing does not depend on the table's values, so without `--lut` every unit
of the space gets a made-up entry and no measuring is needed (seconds, not
the 12 minutes a real table takes); `--lut FILE` uses a real table instead.

    python -m benchmarks.predict_speed --space search_spaces/sandglass.yaml --repeats 5 --json out.json
"""
from __future__ import annotations

import random
import statistics
import sys
import time

from benchmarks._common import finish, median_ms, parse, parser
from benchmarks._latency import made_up_table
from nas.latency import LatencyModel
from nas.space import load_space, sample
from proxies.latency import LatencyTable

QUICK = {"warm": 50, "candidates": 50, "repeats": 2}


def time_predictions(model: LatencyModel, space_file: str, warm: int, candidates: int, seed: int) -> list[float]:
    """Seconds per prediction of `candidates` new architectures, after `warm` others."""
    space = load_space(space_file)
    rng = random.Random(seed)
    for _ in range(warm):
        model.predict_ms(space, sample(space, rng))
    times = []
    for _ in range(candidates):
        arch = sample(space, rng)
        start = time.perf_counter()
        model.predict_ms(space, arch)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, seed=False)
    p.add_argument("--lut", help="a real table for the space (default: made-up entries for every unit)")
    p.add_argument("--warm", type=int, default=1000, help="candidates predicted before timing starts")
    p.add_argument("--candidates", type=int, default=1000, help="new candidates timed per repeat")
    p.add_argument("--repeats", type=int, default=5)
    args = parse(p, QUICK, argv)

    table = LatencyTable.load(args.lut) if args.lut else made_up_table(args.space)
    model = LatencyModel(table, measure_missing=False)
    medians = []
    for r in range(args.repeats):
        times = time_predictions(model, args.space, args.warm, args.candidates, seed=1000 + r)
        medians.append(median_ms(times))
        p90 = statistics.quantiles(times, n=10)[-1] * 1e3
        print(f"repeat {r + 1}: median {medians[-1]:.3f} ms, 90th percentile {p90:.3f} ms per new candidate")
    overall = statistics.median(medians)
    print(f"prediction from a warm table: median of {args.repeats} repeat medians {overall:.3f} ms "
          f"(range {min(medians):.3f}-{max(medians):.3f} ms)")
    return finish(args, {"space": args.space, "table": args.lut or "made-up entries", "warm": args.warm,
                         "candidates": args.candidates, "repeat_medians_ms": medians, "median_ms": overall})


if __name__ == "__main__":
    sys.exit(main())
