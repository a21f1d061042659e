"""Benchmark: how well each zero-cost proxy ranks architectures by trained accuracy, against macs and params.

Samples architectures of a small space, trains each on scikit-learn's digits
for a fixed budget (a subset with several seeds, to show the noise floor of
the "truth"), scores every proxy, and reports Spearman and Kendall of each
proxy and of the ensemble against trained top-1. Also times each proxy per
candidate at the small space's resolution and at 224x224 (sandglass.yaml).

    python -m benchmarks.proxy_correlation [--space search_spaces/sandglass32.yaml] [--archs 50]
        [--epochs 2] [--noise-archs 8] [--noise-seeds 3] [--json benchmarks/results/proxy_correlation.json]
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from benchmarks._common import finish, parse, parser, timed
from nas.search.objectives import DEFAULT_PROXY
from nas.search.proxy_objectives import ProxyObjective
from nas.space import load_space, sample
from nas.stats import kendall, spearman
from nas.train import train
from proxies.zero_cost import PROXIES

ENSEMBLE = ["zen", "naswot", "synflow"]
# Quick mode skips the 224 px timing: the same proxy_time() as at 32 px, but a minute on a 2-core machine.
QUICK = {"archs": 3, "epochs": 1, "noise_archs": 2, "noise_seeds": 2, "timing_224": 0}


def proxy_time(name: str, space, archs, seed: int = 0) -> float:
    """Median seconds to build and score one candidate with `name`."""
    proxy = ProxyObjective([name], seed=seed)  # builds the network and scores it, as the search does
    return statistics.median(timed(proxy.raw, space, arch)[0] for arch in archs)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, space="search_spaces/sandglass32.yaml", threads=1)
    p.add_argument("--archs", type=int, default=50)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--noise-archs", type=int, default=8, help="architectures trained with several seeds")
    p.add_argument("--noise-seeds", type=int, default=3)
    p.add_argument("--timing-224", type=int, default=3, help="sandglass.yaml candidates timed at 224 px (0: skip)")
    args = parse(p, QUICK, argv)
    torch.set_num_threads(args.threads)

    space = load_space(args.space)
    archs = [dict(sample(space, args.seed + i)) for i in range(args.archs)]
    names = sorted(PROXIES)
    ensemble = ProxyObjective(ENSEMBLE, seed=args.seed)

    rows = []
    start = time.perf_counter()
    for i, arch in enumerate(archs):
        result = train(space, arch, "digits", args.epochs, seed=args.seed)
        raw = ProxyObjective(names, seed=args.seed).raw(space, arch)
        raw["ensemble"] = ensemble.score(space, arch, None)
        rows.append({"index": i, "top1": result.top1, "train_seconds": result.seconds, **raw})
        print(f"[{i + 1}/{len(archs)}] top1 {result.top1:.4f}  " + "  ".join(f"{n} {raw[n]:.3g}" for n in names)
              + f"  ({time.perf_counter() - start:.0f} s)", flush=True)

    noise = []
    for i in range(min(args.noise_archs, len(archs))):
        accs = [rows[i]["top1"]] + [train(space, archs[i], "digits", args.epochs, seed=args.seed + s).top1
                                    for s in range(1, args.noise_seeds)]
        noise.append({"index": i, "top1": accs, "stdev": statistics.pstdev(accs)})
    top1 = [r["top1"] for r in rows]
    table = {}
    for name in [*names, "ensemble"]:
        values = [r[name] for r in rows]
        table[name] = {"spearman": spearman(values, top1), "kendall": kendall(values, top1)}
    seed_stdev = statistics.median(n["stdev"] for n in noise) if noise else None
    # The truth's own ranking noise: rank agreement between two seeds' accuracies of the noise subset.
    seed_spearman = None
    if noise and args.noise_seeds > 1:
        seed_spearman = spearman([n["top1"][0] for n in noise], [n["top1"][1] for n in noise])

    print(f"\n{len(archs)} architectures of {args.space}, digits, {args.epochs} epochs, seed {args.seed}; "
          f"top-1 {min(top1):.3f}..{max(top1):.3f} (median {statistics.median(top1):.3f}); "
          f"noise floor: median per-arch stdev over {args.noise_seeds} seeds {seed_stdev:.4f}, "
          f"seed-vs-seed Spearman on {len(noise)} archs {seed_spearman if seed_spearman is None else round(seed_spearman, 3)}")
    print(f"{'proxy':>10} {'Spearman':>9} {'Kendall':>8}")
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["spearman"]):
        mark = " (default)" if name == DEFAULT_PROXY else ""
        print(f"{name:>10} {row['spearman']:>9.3f} {row['kendall']:>8.3f}{mark}")

    timing = {"32": {n: proxy_time(n, space, archs[:5], args.seed) for n in names}}
    if args.timing_224:
        big = load_space("search_spaces/sandglass.yaml")
        big_archs = [dict(sample(big, args.seed + i)) for i in range(args.timing_224)]
        timing["224"] = {n: proxy_time(n, big, big_archs, args.seed) for n in names}
    print(f"\nseconds per candidate (build + score, batch 8, {args.threads} thread(s), median):")
    for n in names:
        line = f"{n:>10} {timing['32'][n]:8.3f} s at {space.resolution[-1]} px"
        if "224" in timing:
            line += f"   {timing['224'][n]:8.3f} s at 224 px"
        print(line)
    return finish(args, {
        "space": args.space, "archs": len(archs), "epochs": args.epochs, "ensemble": ENSEMBLE,
        "default_proxy": DEFAULT_PROXY, "table": table, "noise": noise, "seed_stdev_median": seed_stdev,
        "seed_vs_seed_spearman": seed_spearman, "timing_s": timing, "rows": rows})


if __name__ == "__main__":
    sys.exit(main())
