"""Benchmark: scoring MACs + params from the per-block cache vs fvcore on the whole model, and build time.

Both are measured in the same run on the same candidates of a space, so the
ratio is meaningful on a noisy shared machine; figures are medians.

    python benchmarks/cost_scoring.py [--space search_spaces/sandglass.yaml] [--candidates 20] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.builder import build  # noqa: E402
from nas.cost import CostModel, whole_model_counts  # noqa: E402
from nas.space import load_space, plan, sample  # noqa: E402


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="search_spaces/sandglass.yaml")
    parser.add_argument("--candidates", type=int, default=20, help="random candidates per measurement")
    parser.add_argument("--repeats", type=int, default=20, help="warm scoring repeats per candidate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    space = load_space(args.space)
    archs = [sample(space, args.seed + i) for i in range(args.candidates)]
    fresh = [sample(space, args.seed + 10_000 + i) for i in range(args.candidates)]
    model = CostModel()

    # fvcore on the whole model (what a user would otherwise do per candidate): build + trace + count.
    whole = [timed(whole_model_counts, space, a)[0] for a in archs]

    # Cold pass fills the per-block cache (one trace per unique unit), then warm scoring.
    cold = [timed(model.macs_params, space, a)[0] for a in archs]
    warm = []
    for a in archs:
        warm.extend(timed(model.macs_params, space, a)[0] for _ in range(args.repeats))
    planning = [timed(plan, space, a)[0] for a in archs for _ in range(args.repeats)]

    # New candidates against the warm cache: their unseen units are counted on the way.
    known = len(model)
    fresh_units = sum(len(plan(space, a).units) for a in fresh)
    new = [timed(model.macs_params, space, a)[0] for a in fresh]
    misses = len(model) - known

    build_init = [timed(build, space, a)[0] for a in archs]
    build_struct = [timed(build, space, a, init=False)[0] for a in archs]
    params = [model.macs_params(space, a)[1] for a in archs]

    med = statistics.median
    figures = {
        "space": args.space,
        "candidates": args.candidates,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "whole_model_fvcore_ms": med(whole) * 1e3,
        "cold_score_ms": med(cold) * 1e3,
        "warm_score_ms": med(warm) * 1e3,
        "plan_ms": med(planning) * 1e3,
        "speedup_warm_vs_whole_model": med(whole) / med(warm),
        "new_candidate_score_ms": med(new) * 1e3,
        "new_candidate_unit_miss_rate": misses / fresh_units,
        "cache_entries": len(model),
        "build_ms_with_init": med(build_init) * 1e3,
        "build_ms_without_init": med(build_struct) * 1e3,
        "median_params": med(params),
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
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
