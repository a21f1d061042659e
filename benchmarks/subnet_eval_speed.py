"""Benchmark: seconds to score one subnet of a supernet (BN recalibration + held-out evaluation) on digits.

Random subnets of the space, each scored once by `nas.supernet.SubnetEvaluator` (recalibration on 512
training images, then the held-out split), after a few warm-up subnets; also without recalibration, and
the time to build the supernet. Figures are medians over the subnets. Weights are the supernet's initial
ones: the time does not depend on their values. The target (issue 14) is under 1 s a subnet.

    python -m benchmarks.subnet_eval_speed [--space search_spaces/sandglass32.yaml] [--subnets 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch

from benchmarks._common import finish, median_ms, parse, parser, timed
from nas.space import load_space, sample
from nas.supernet import SubnetEvaluator, Supernet

QUICK = {"subnets": 3, "warmup": 1, "calib_images": 64}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, space="search_spaces/sandglass32.yaml", threads=2)
    p.add_argument("--subnets", type=int, default=20, help="random subnets timed")
    p.add_argument("--warmup", type=int, default=2, help="subnets scored first, not timed")
    p.add_argument("--calib-images", type=int, default=512, help="training images that recalibrate each subnet")
    args = parse(p, QUICK, argv)
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(before)  # a caller (the test suite) keeps its own thread count


def _run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    build_s, supernet = timed(Supernet, space)
    evaluator = SubnetEvaluator(supernet.eval(), "digits", calib_images=args.calib_images, device="cpu")
    for r in space.resolution:
        evaluator.images(r)  # data preparation is not what is timed
    archs = [sample(space, args.seed + i) for i in range(args.warmup + args.subnets)]
    for arch in archs[:args.warmup]:
        evaluator.score(arch)
    timed_archs = archs[args.warmup:]
    recalibrated = [evaluator.score(a).seconds for a in timed_archs]
    shared = [evaluator.score(a, recalibrate=False).seconds for a in timed_archs]
    figures = {
        "space": args.space, "subnets": args.subnets, "torch_threads": torch.get_num_threads(),
        "calib_images": args.calib_images, "load_average": list(os.getloadavg()),
        "supernet_build_s": build_s,
        "recalibrate_and_evaluate_ms": median_ms(recalibrated),
        "recalibrate_and_evaluate_max_ms": max(recalibrated) * 1e3,
        "evaluate_only_ms": median_ms(shared),
        "under_1s": sum(s < 1.0 for s in recalibrated) / len(recalibrated),
    }
    print(f"{args.space}: {args.subnets} subnets at {figures['torch_threads']} threads (load average "
          f"{figures['load_average'][0]:.2f}); supernet built in {build_s:.1f} s")
    print(f"recalibrate + evaluate: median {figures['recalibrate_and_evaluate_ms']:.0f} ms, max "
          f"{figures['recalibrate_and_evaluate_max_ms']:.0f} ms, {figures['under_1s']:.0%} under 1 s; "
          f"evaluate only: median {figures['evaluate_only_ms']:.0f} ms (spread of recalibrated: "
          f"{statistics.pstdev(recalibrated) * 1e3:.0f} ms sd)")
    return finish(args, figures)


if __name__ == "__main__":
    raise SystemExit(main())
