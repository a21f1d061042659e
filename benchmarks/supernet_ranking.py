"""Benchmark: how well a weight-sharing supernet ranks subnets by their stand-alone accuracy (issue 14).

Protocol, fixed before any result was looked at (the sizes come from a short
pilot on other architectures, which measured only time per run and whether
top-1 sat at the ceiling):

- Task. scikit-learn's digits at 24 and 32 px, made harder than the default
  split: the training set is a stratified subset of `--per-class` images per
  class (30: 300 images) of the fixed training split (seed 0); everything
  else is held out: the test split (359) plus the unused training images
  (1138), 1497 images, so one image is 0.07% of top-1. The same indices at
  both resolutions. The supernet trains on the same 300 images.
- Subnets. `--pool` (2000) random architectures of the space (seeds 0..),
  deduplicated, cut into `--subnets` (45) MACs-quantile bins; one drawn per
  bin (random.Random(seed)). So they spread over the whole MACs range.
- Truth. Each subnet trained stand-alone with `nas.train.train` (its plain
  recipe, `--epochs` 40, batch 64, lr 0.1) for seeds 0, 1, 2, one thread;
  held-out top-1 and log-loss (mean cross-entropy of the trained model's
  logits). The truth is the mean over seeds. Runs are cached in `--cache`
  and a rerun skips the (subnet, seed) pairs already there.
- Rankers, each "higher predicts better": the supernet's inherited top-1 and
  -log-loss with BN recalibration and without; MACs; params; naswot (the
  search objective's ProxyObjective, seed 0); one epoch of stand-alone
  training (seed 100, so it shares no initialisation with the truth): its
  top-1 and -log-loss. "Equal compute" is taken per query: one epoch on 300
  images is 300 forward+backward passes plus the held-out evaluation, the
  same order as the supernet's per-subnet recalibration plus evaluation (the
  seconds of both are reported). Amortising the supernet's training over only
  45 subnets instead would give each more compute than the truth itself.
- Supernet. `nas.supernet.train.train_supernet` on the same 300 images,
  `--supernet-epochs` 320 (1600 sandwich steps: the trainer's docstring
  measured random subnets reaching 0.95 only after ~1400 steps on full
  digits), seed 0, 1 thread (2 threads ran 10x slower a step on
  the busy 2-core machine); each subnet scored by
  `SubnetEvaluator.score` on the same held-out images, with and without BN
  recalibration.
- Figures. Kendall tau-b and Spearman of each ranker against the truth, by
  top-1 and by log-loss, each with a 95% percentile bootstrap interval
  (`--bootstrap` 2000 resamples of the subnets, the same resamples for every
  ranker), and the paired difference supernet minus the best baseline. The
  noise floor: for each seed, tau between that seed's run and the mean of the
  other two, averaged over the seeds (with its interval): how well one
  stand-alone run ranks. Tau within 3 MACs bins (tertiles of the subnets),
  averaged. Median seconds per subnet of recalibration + evaluation, and the
  supernet's training seconds.
- Targets (issue 14, reported, not tuned to): supernet tau >= 0.5 with its
  interval's lower end above the best baseline's tau; >= 0.6 of the noise
  floor; recalibration + evaluation under 1 s per subnet; training under
  30 minutes on 2 cores.

    python -m benchmarks.supernet_ranking [--space search_spaces/sandglass32.yaml] [--subnets 45]
        [--epochs 40] [--supernet-epochs N] [--cache benchmarks/results/supernet_ranking_runs.json]
        [--no-supernet] [--json benchmarks/results/supernet_ranking.json]
"""
from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from benchmarks._common import finish, parse, parser, timed, write_json
from nas.cost import CostModel
from nas.data import Dataset, prepared
from nas.search.proxy_objectives import ProxyObjective
from nas.space import decode, encode, load_space, plan, sample
from nas.stats import kendall, spearman
from nas.supernet.evaluate import SubnetEvaluator
from nas.supernet.train import train_supernet
from nas.train import evaluate_loss, train

SHORT_SEED = 100  # the one-epoch baseline's seed: no initialisation shared with the truth's seeds 0..
BINS = 3  # MACs bins for the within-bin tau
QUICK = {"subnets": 4, "pool": 40, "per_class": 5, "epochs": 1, "seeds": 2, "bootstrap": 50,
         "supernet_epochs": 1, "cache": None}


def task(space, per_class: int, seed: int = 0) -> dict[int, Dataset]:
    """{resolution: Dataset}: a stratified `per_class` subset of digits' training split to train on, the
    rest of that split plus the test split held out; the same indices at every resolution."""
    out = {}
    for res in space.resolution:
        d = prepared("digits", res, space.in_channels)
        y = d.y_train.numpy()
        rng = np.random.default_rng(seed)
        pick = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class]
                                       for c in np.unique(y)]))
        rest = torch.from_numpy(np.setdiff1d(np.arange(len(y)), pick))
        pick_t = torch.from_numpy(pick)
        out[res] = Dataset(source=f"digits[{per_class}/class]", classes=d.classes,
                           x_train=d.x_train[pick_t].contiguous(), y_train=d.y_train[pick_t],
                           x_test=torch.cat([d.x_test, d.x_train[rest]]).contiguous(),
                           y_test=torch.cat([d.y_test, d.y_train[rest]]))
    return out


def pick_subnets(space, n: int, pool: int, seed: int, costs: CostModel) -> list[dict[str, Any]]:
    """`n` distinct architectures spread over the MACs range: one per MACs-quantile bin of a random pool."""
    seen: dict[str, tuple[int, int]] = {}
    for i in range(pool):
        key = encode(space, sample(space, seed + i))
        if key not in seen:
            seen[key] = costs.macs_params(space, decode(space, key))
    ranked = sorted(seen, key=lambda k: (seen[k][0], k))
    if len(ranked) < n:
        raise SystemExit(f"--pool {pool}: only {len(ranked)} distinct architectures, fewer than --subnets {n}")
    rng = random.Random(seed)
    edges = [round(i * len(ranked) / n) for i in range(n + 1)]
    keys = [ranked[rng.randrange(lo, hi)] for lo, hi in zip(edges, edges[1:])]
    return [{"arch": k, "macs": seen[k][0], "params": seen[k][1]} for k in keys]


def run_once(space, key: str, data: Mapping[int, Dataset], epochs: int, seed: int) -> dict[str, float]:
    """One stand-alone training run of the subnet `key`: held-out top-1, log-loss and seconds."""
    arch = decode(space, key)
    seconds, result = timed(train, space, arch, data[plan(space, arch).resolution], epochs, seed=seed)
    ds = data[plan(space, arch).resolution]
    top1, log_loss = evaluate_loss(result.model, ds.x_test.contiguous(memory_format=torch.channels_last), ds.y_test)
    return {"top1": top1, "log_loss": log_loss, "seconds": seconds}


class RunCache:
    """Stand-alone runs by (subnet, seed), kept in a JSON file written after every run, so that a
    killed benchmark resumes where it stopped. A file made under another protocol is refused."""

    def __init__(self, path: str | None, protocol: Mapping[str, Any]) -> None:
        self.path, self.protocol, self.runs = (Path(path) if path else None), dict(protocol), {}
        if self.path is not None and self.path.exists():
            doc = json.loads(self.path.read_text())
            if doc.get("protocol") != self.protocol:
                raise SystemExit(f"{self.path}: made under another protocol {doc.get('protocol')}; "
                                 f"this run's is {self.protocol}: use another --cache")
            self.runs = doc["runs"]

    def get(self, key: str, seed: int, make: Callable[[], dict[str, float]]) -> dict[str, float]:
        name = f"{key}#seed{seed}"
        if name not in self.runs:
            self.runs[name] = make()
            if self.path is not None:
                write_json(self.path, {"protocol": self.protocol, "runs": self.runs})
        return self.runs[name]


def standalone(space, subnets: list[dict], data, epochs: int, seeds: int, cache: RunCache) -> None:
    """Add each subnet's stand-alone runs (`runs`: one per seed) and their means (`top1`, `log_loss`)."""
    start = time.perf_counter()
    for i, s in enumerate(subnets):
        s["runs"] = [cache.get(s["arch"], seed, lambda seed=seed: run_once(space, s["arch"], data, epochs, seed))
                     for seed in range(seeds)]
        s["top1"] = statistics.mean(r["top1"] for r in s["runs"])
        s["log_loss"] = statistics.mean(r["log_loss"] for r in s["runs"])
        print(f"[{i + 1}/{len(subnets)}] {s['macs'] / 1e6:.2f} M MACs  top-1 {s['top1']:.4f}  "
              f"log-loss {s['log_loss']:.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)


def baselines(space, subnets: list[dict], data, seed: int) -> dict[str, list[float]]:
    """Each baseline's score per subnet, higher predicting better."""
    naswot = ProxyObjective(["naswot"], seed=seed)
    short = [run_once(space, s["arch"], data, 1, SHORT_SEED) for s in subnets]
    return {"macs": [s["macs"] for s in subnets], "params": [s["params"] for s in subnets],
            "naswot": [naswot.raw(space, decode(space, s["arch"]))["naswot"] for s in subnets],
            "one_epoch_top1": [r["top1"] for r in short], "one_epoch_log_loss": [-r["log_loss"] for r in short],
            "one_epoch_seconds": [r["seconds"] for r in short]}


def supernet_rankers(space, subnets: list[dict], data, args) -> tuple[dict[str, dict[str, list[float]]], dict]:
    """Train the supernet on the task (or finish / reuse the run in --supernet), then score every subnet
    with and without BN recalibration. Returns the rankers and the timings."""
    torch.set_num_threads(args.supernet_threads)
    with tempfile.TemporaryDirectory() as tmp:  # without --supernet, the checkpoint is not kept
        out = Path(args.supernet) if args.supernet else Path(tmp) / "supernet.pt"
        result = train_supernet(space, data, out, epochs=args.supernet_epochs, seed=args.seed, cost=CostModel())
    print(f"supernet: {result.epochs} epochs, {result.steps} steps, {result.run_seconds:.0f} s "
          f"({args.supernet_threads} threads)", flush=True)
    torch.set_num_threads(args.threads)
    evaluator = SubnetEvaluator(result.supernet, data)
    rankers: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for recalibrate, name in ((True, "supernet_recalibrated"), (False, "supernet_no_recalibration")):
        scored = [evaluator.score(decode(space, s["arch"]), recalibrate=recalibrate) for s in subnets]
        rankers[name] = {"top1": [r.top1 for r in scored], "log_loss": [-r.log_loss for r in scored]}
        seconds[name] = [r.seconds for r in scored]
        for s, r in zip(subnets, scored):
            s[name] = {"top1": r.top1, "log_loss": r.log_loss, "seconds": r.seconds}
    timing = {"supernet_train_seconds": result.run_seconds, "supernet_epochs": result.epochs,
              "supernet_steps": result.steps, "supernet_threads": args.supernet_threads,
              "score_threads": args.threads, "loss": list(result.loss), "distill": list(result.distill),
              **{f"{n}_seconds_median": statistics.median(v) for n, v in seconds.items()}}
    return rankers, timing


def interval(stat: Callable[[np.ndarray], float], n: int, reps: int, seed: int) -> list[float]:
    """95% percentile bootstrap interval of `stat(indices)` over resamples of the n subnets."""
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, n)) for _ in range(reps)]
    return [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]


def noise_tau(runs: np.ndarray, idx: np.ndarray) -> float:
    """Mean over seeds of tau(one seed's runs, the mean of the other seeds'): how well one run ranks."""
    taus = []
    for s in range(runs.shape[1]):
        others = np.delete(runs, s, axis=1).mean(axis=1)
        taus.append(kendall(runs[idx, s], others[idx]))
    return float(np.mean(taus))


def finite_mean(values: Sequence[float]) -> float:
    """The mean of the defined values (a bin of one subnet has no tau), nan when there is none."""
    kept = [v for v in values if np.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def binned(stat: Callable[[np.ndarray], float], macs: Sequence[int]) -> list[float]:
    """`stat` within each of BINS MACs tertiles of the subnets."""
    order = np.argsort(macs, kind="mergesort")
    return [stat(np.sort(part)) for part in np.array_split(order, BINS)]


def correlations(scores: Sequence[float], truth: np.ndarray, macs: Sequence[int], reps: int,
                 seed: int) -> dict[str, Any]:
    """Kendall and Spearman of `scores` against `truth`, with bootstrap intervals and the within-bin tau."""
    x = np.asarray(scores, dtype=float)
    tau = lambda idx: kendall(x[idx], truth[idx])  # noqa: E731
    rho = lambda idx: spearman(x[idx], truth[idx])  # noqa: E731
    every = np.arange(len(x))
    within = binned(tau, macs)
    return {"kendall": tau(every), "kendall_ci": interval(tau, len(x), reps, seed),
            "spearman": rho(every), "spearman_ci": interval(rho, len(x), reps, seed),
            "kendall_within_bins": within, "kendall_within_bins_mean": finite_mean(within)}


def table(subnets: list[dict], rankers: Mapping[str, Mapping[str, Sequence[float]]], reps: int,
          seed: int) -> dict[str, Any]:
    """Per truth (top-1, log-loss): every ranker's correlations, the noise floor, and the supernet's
    paired margin over the best baseline. Every score and truth is oriented "higher is better"."""
    macs = [s["macs"] for s in subnets]
    out: dict[str, Any] = {}
    for truth_name, sign in (("top1", 1.0), ("log_loss", -1.0)):
        runs = sign * np.array([[r[truth_name] for r in s["runs"]] for s in subnets])
        truth = runs.mean(axis=1)
        every = np.arange(len(subnets))
        noise = {"kendall": noise_tau(runs, every),
                 "kendall_ci": interval(lambda idx: noise_tau(runs, idx), len(subnets), reps, seed),
                 "kendall_within_bins": binned(lambda idx: noise_tau(runs, idx), macs)}
        noise["kendall_within_bins_mean"] = finite_mean(noise["kendall_within_bins"])
        rows = {name: correlations(by_truth[truth_name], truth, macs, reps, seed)
                for name, by_truth in rankers.items()}
        out[truth_name] = {"noise_floor": noise, "rankers": rows, **margin(rankers, rows, truth_name, truth,
                                                                           reps, seed)}
    return out


def margin(rankers, rows, truth_name: str, truth: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    """The best baseline by tau, and tau(supernet) - tau(best baseline) on the same resamples, for the
    supernet with and without recalibration."""
    base = [n for n in rows if not n.startswith("supernet")]
    supernets = [n for n in rows if n.startswith("supernet")]
    if not base or not supernets:
        return {}
    best = max(base, key=lambda n: rows[n]["kendall"])
    b = np.asarray(rankers[best][truth_name], dtype=float)
    out: dict[str, Any] = {"best_baseline": best, "minus_best_kendall": {}}
    for name in supernets:
        a = np.asarray(rankers[name][truth_name], dtype=float)
        diff = lambda idx: kendall(a[idx], truth[idx]) - kendall(b[idx], truth[idx])  # noqa: E731
        out["minus_best_kendall"][name] = {"kendall": diff(np.arange(len(a))),
                                           "kendall_ci": interval(diff, len(a), reps, seed)}
    return out


def baseline_rankers(scores: Mapping[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    """The baselines as rankers: one score for both truths, except one epoch's own top-1 / log-loss."""
    plain = {n: {"top1": scores[n], "log_loss": scores[n]} for n in ("macs", "params", "naswot")}
    return {**plain, "one_epoch": {"top1": scores["one_epoch_top1"], "log_loss": scores["one_epoch_log_loss"]}}


def show(figures: Mapping[str, Any]) -> None:
    """The table: tau [interval], Spearman and the within-bin tau of each ranker, per truth."""
    for truth_name, block in figures.items():
        print(f"\nranking by held-out {truth_name} (mean of the stand-alone seeds):")
        print(f"{'ranker':>24} {'Kendall':>7} {'95% interval':>16} {'Spearman':>8} {'95% interval':>16} "
              f"{'tau in MACs bins':>16}")
        rows = {"noise floor (1 run)": block["noise_floor"], **block["rankers"]}
        for name, r in rows.items():
            rho = f"{r['spearman']:8.3f} [{r['spearman_ci'][0]:6.3f},{r['spearman_ci'][1]:6.3f}]" \
                if "spearman" in r else f"{'':>8} {'':>16}"
            print(f"{name:>24} {r['kendall']:7.3f} [{r['kendall_ci'][0]:6.3f},{r['kendall_ci'][1]:6.3f}] {rho} "
                  f"{r['kendall_within_bins_mean']:16.3f}")
        for name, d in block.get("minus_best_kendall", {}).items():
            lo, hi = d["kendall_ci"]
            print(f"{name} minus the best baseline ({block['best_baseline']}): "
                  f"{d['kendall']:+.3f} [{lo:+.3f},{hi:+.3f}]")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, space="search_spaces/sandglass32.yaml", threads=1)
    p.add_argument("--subnets", type=int, default=45)
    p.add_argument("--pool", type=int, default=2000, help="random architectures the subnets are picked from")
    p.add_argument("--per-class", type=int, default=30, help="training images per class")
    p.add_argument("--epochs", type=int, default=40, help="stand-alone training epochs (the truth)")
    p.add_argument("--seeds", type=int, default=3, help="stand-alone seeds per subnet")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--cache", default="benchmarks/results/supernet_ranking_runs.json",
                   help="stand-alone runs, kept between runs of the benchmark")
    p.add_argument("--supernet-epochs", type=int, default=320,
                   help="1600 sandwich steps on 300 images (see the trainer's measured figures)")
    p.add_argument("--supernet-threads", type=int, default=1,
                   help="1: on the shared 2-core machine 2 threads trained 10x slower a step")
    p.add_argument("--supernet", help="a supernet checkpoint: trained there if missing, reused if present")
    p.add_argument("--no-supernet", action="store_true", help="stand-alone runs, noise floor and baselines only")
    args = parse(p, QUICK, argv)
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    data = task(space, args.per_class, args.seed)
    subnets = pick_subnets(space, args.subnets, args.pool, args.seed, CostModel())
    protocol = {"space": space.name, "per_class": args.per_class, "epochs": args.epochs, "split_seed": args.seed}
    standalone(space, subnets, data, args.epochs, args.seeds, RunCache(args.cache, protocol))
    scores = baselines(space, subnets, data, args.seed)
    rankers = baseline_rankers(scores)
    timing: dict[str, Any] = {"standalone_seconds_median": statistics.median(
        r["seconds"] for s in subnets for r in s["runs"]),
        "one_epoch_seconds_median": statistics.median(scores["one_epoch_seconds"])}
    if not args.no_supernet:
        supernet, supernet_timing = supernet_rankers(space, subnets, data, args)
        rankers, timing = {**supernet, **rankers}, {**timing, **supernet_timing}
    figures = table(subnets, rankers, args.bootstrap, args.seed)
    show(figures)
    print(f"\n{len(subnets)} subnets of {args.space}, {data[space.resolution[-1]].source}: "
          f"{len(data[space.resolution[-1]].y_train)} training / {len(data[space.resolution[-1]].y_test)} held-out "
          f"images; truth {args.epochs} epochs x {args.seeds} seeds; top-1 "
          f"{min(s['top1'] for s in subnets):.3f}..{max(s['top1'] for s in subnets):.3f}")
    print("timing: " + ", ".join(f"{k} {v:.3g}" for k, v in timing.items() if isinstance(v, (int, float))))
    return finish(args, {"space": args.space, "protocol": protocol, "seeds": args.seeds, "timing": timing,
                         "table": figures, "subnets": subnets, "baseline_scores": scores})


if __name__ == "__main__":
    sys.exit(main())
