"""Benchmark: scoring MACs + params from the per-block cache vs fvcore on the whole model, and build time.

Both are measured in the same run on the same candidates of a space, so the
ratio is meaningful on a noisy shared machine; figures are medians.

    python -m benchmarks.cost_scoring [--space search_spaces/sandglass.yaml] [--candidates 20] [--json out.json]
"""
from __future__ import annotations

import platform
import statistics
import sys

import torch

from benchmarks._common import finish, median_ms, parse, parser, timed
from nas.builder import build
from nas.cost import CostModel, whole_model_counts
from nas.space import load_space, plan, sample

QUICK = {"candidates": 3, "repeats": 3}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--candidates", type=int, default=20, help="random candidates per measurement")
    p.add_argument("--repeats", type=int, default=20, help="warm scoring repeats per candidate")
    args = parse(p, QUICK, argv)

    space = load_space(args.space)
    archs = [sample(space, args.seed + i) for i in range(args.candidates)]
    fresh = [sample(space, args.seed + 10_000 + i) for i in range(args.candidates)]
    model = CostModel()

    # fvcore on the whole model (what a user would otherwise do per candidate): build + trace + count.
    whole = [timed(whole_model_counts, space, a)[0] for a in archs]

    # Cold pass fills the per-block cache (one trace per unique unit), then warm scoring.
    cold = [timed(model.macs_params, space, a)[0] for a in archs]
    warm = [timed(model.macs_params, space, a)[0] for a in archs for _ in range(args.repeats)]
    planning = [timed(plan, space, a)[0] for a in archs for _ in range(args.repeats)]

    # New candidates against the warm cache: their unseen units are counted on the way.
    known = len(model)
    fresh_units = sum(len(plan(space, a).units) for a in fresh)
    new = [timed(model.macs_params, space, a)[0] for a in fresh]
    misses = len(model) - known

    build_init = [timed(build, space, a)[0] for a in archs]
    build_struct = [timed(build, space, a, init=False)[0] for a in archs]
    params = [model.macs_params(space, a)[1] for a in archs]

    figures = {
        "space": args.space,
        "candidates": args.candidates,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "whole_model_fvcore_ms": median_ms(whole),
        "cold_score_ms": median_ms(cold),
        "warm_score_ms": median_ms(warm),
        "plan_ms": median_ms(planning),
        "speedup_warm_vs_whole_model": statistics.median(whole) / statistics.median(warm),
        "new_candidate_score_ms": median_ms(new),
        "new_candidate_unit_miss_rate": misses / fresh_units,
        "cache_entries": len(model),
        "build_ms_with_init": median_ms(build_init),
        "build_ms_without_init": median_ms(build_struct),
        "median_params": statistics.median(params),
    }
    print(f"space {args.space}, {args.candidates} random candidates, torch threads {figures['torch_threads']}")
    print(f"  fvcore on the whole model (build + trace) median {figures['whole_model_fvcore_ms']:9.1f} ms")
    print(f"  per-block sum, cold cache                 median {figures['cold_score_ms']:9.1f} ms")
    print(f"  per-block sum, warm cache                 median {figures['warm_score_ms']:9.3f} ms "
          f"(planning alone {figures['plan_ms']:.3f} ms)")
    print(f"  speed-up, warm vs whole model                    {figures['speedup_warm_vs_whole_model']:9.0f} x")
    print(f"  new candidates vs that cache              median {figures['new_candidate_score_ms']:9.1f} ms "
          f"({figures['new_candidate_unit_miss_rate']:.0%} of their units were new)")
    print(f"  build, structure + init                   median {figures['build_ms_with_init']:9.1f} ms "
          f"(median {figures['median_params'] / 1e6:.1f} M params)")
    print(f"  build, structure only (init deferred)     median {figures['build_ms_without_init']:9.1f} ms")
    return finish(args, figures)


if __name__ == "__main__":
    sys.exit(main())
