"""Which reading puts a group of units at the table's level under load: the block probe, or anchors.

A group of units filled into a table is rescaled by how fast the machine ran while it was timed
(`nas.latency.timing`). Two readings of that are compared here, on random units of a space timed in
rotation as table units are (`UNIT_MEASURE`), groups alternating between a calm machine and one with a
load started by this benchmark (another process: one or two pure-Python spinners, or a 1- or 2-thread
torch matrix product):

- the block probe, timed alone right before and right after the group (what every group used before
  anchors, and what a new table's first groups still use);
- anchors: some of the group's own units, standing for units already in the table, their calm
  figure taken as their entry; the median of their time over it (`nas.latency.anchors`).

Each unit's calm figure is its median over the calm groups. Per loaded group, the other units are
rescaled by each reading and compared with their calm figures. Printed: each group's units' slowdown
and both readings; then, over the loaded groups, the median and 90th percentile of each unit's
|error| after rescaling by the probe, by anchors, or not at all.

    python -m benchmarks.anchor_tracking --units 16 --rounds 2 --json out.json
"""
from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import time
from typing import Iterator

import numpy as np
import torch

from benchmarks._common import finish, parse, parser
from nas.builder import build_unit
from nas.latency.anchors import ANCHORS
from nas.latency.timing import UNIT_MEASURE
from nas.space import load_space, plan, sample
from proxies.latency import current_profile, measure_modules
from proxies.latency.reference import Probe

QUICK = {"units": 5, "rounds": 1, "loads": ["spin1"], "draws": 5}
LOADS = {
    "spin1": ["while True: pass"],
    "spin2": ["while True: pass"] * 2,
    "torch1": ["import torch; torch.set_num_threads(1); a = torch.randn(512, 512)\nwhile True: a @ a"],
    "torch2": ["import torch; torch.set_num_threads(2); a = torch.randn(512, 512)\nwhile True: a @ a"],
}
SETTLE_S = 1.5  # a load runs this long before its group is timed (torch's import included)


@contextlib.contextmanager
def running(load: str) -> Iterator[None]:
    """The processes of `load` (a LOADS name; anything else: none) run inside the block, started
    SETTLE_S before it and killed after it."""
    procs = [subprocess.Popen([sys.executable, "-c", code]) for code in LOADS.get(load, [])]
    try:
        if procs:
            time.sleep(SETTLE_S)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def timed_group(runners_items, profile, probe: Probe, load: str) -> dict:
    """One group timed in rotation between two probe readings, with `load` running beside it."""
    with running(load):
        before = probe.time_ms()
        figures = measure_modules(runners_items, profile, copy=False, **UNIT_MEASURE)
        after = probe.time_ms()
    return {"probe": (before * after) ** 0.5, "units": [m.median_ms for m in figures]}


def errors(group: dict, calm_units: np.ndarray, calm_probe: float, anchors: int, draws: int,
           rng: random.Random) -> dict[str, list[float]]:
    """|log error| of each non-anchor unit after rescaling by each reading, over `draws` anchor draws."""
    units = np.array(group["units"])
    out: dict[str, list[float]] = {"none": [], "probe": [], "anchors": []}
    for _ in range(draws):
        idx = rng.sample(range(len(units)), anchors)
        rest = [i for i in range(len(units)) if i not in idx]
        truth = calm_units[rest]
        out["none"] += list(np.abs(np.log(units[rest] / truth)))
        out["probe"] += list(np.abs(np.log(units[rest] * calm_probe / group["probe"] / truth)))
        ratio = np.median(units[idx] / calm_units[idx])
        out["anchors"] += list(np.abs(np.log(units[rest] / ratio / truth)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, threads=2)
    p.add_argument("--units", type=int, default=16, help="random units of the space in the group")
    p.add_argument("--rounds", type=int, default=2, help="times each load is run (each between calm groups)")
    p.add_argument("--loads", nargs="+", default=list(LOADS), choices=list(LOADS))
    p.add_argument("--draws", type=int, default=50, help="random anchor draws per loaded group")
    args = parse(p, QUICK, argv)
    if args.units < ANCHORS + 1:
        p.error(f"--units must be at least {ANCHORS + 1} (the anchors and one unit to rescale)")
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    profile = current_profile("torch", threads=args.threads)
    rng = random.Random(args.seed)
    pool: dict = {}
    for _ in range(100):
        for u in plan(space, sample(space, rng)).units:
            pool.setdefault(u.text, u)
    chosen = rng.sample(sorted(pool.values(), key=lambda u: u.text), min(args.units, len(pool)))
    items = [(build_unit(u.key, space.norm), u.key.input_shape) for u in chosen]
    probe = Probe(profile)

    schedule = ["calm"] + [c for _ in range(args.rounds) for load in args.loads for c in (load, "calm")]
    groups = []
    for i, cond in enumerate(schedule, 1):
        groups.append({"load": cond, **timed_group(items, profile, probe, cond)})
        print(f"  group {i}/{len(schedule)} {cond}: probe {groups[-1]['probe']:.2f} ms, "
              f"units' sum {sum(groups[-1]['units']):.1f} ms", flush=True)
    calm = [g for g in groups if g["load"] == "calm"]
    calm_units = np.median([g["units"] for g in calm], axis=0)
    calm_probe = float(np.median([g["probe"] for g in calm]))

    print("group    units' slowdown [p10-p90]   probe reads   anchors read (first 4)")
    pooled: dict[str, list[float]] = {"none": [], "probe": [], "anchors": []}
    for g in groups:
        ratios = np.array(g["units"]) / calm_units
        g["units_slowdown"] = float(np.median(ratios))
        g["probe_reads"] = g["probe"] / calm_probe
        g["anchors_read"] = float(np.median(ratios[:ANCHORS]))
        print(f"  {g['load']:7s} {g['units_slowdown']:5.2f} [{np.percentile(ratios, 10):.2f}-"
              f"{np.percentile(ratios, 90):.2f}]          {g['probe_reads']:5.2f}         {g['anchors_read']:5.2f}")
        if g["load"] != "calm":
            for k, v in errors(g, calm_units, calm_probe, ANCHORS, args.draws, rng).items():
                pooled[k] += v
    summary = {k: {"median": float(np.expm1(np.median(v))), "p90": float(np.expm1(np.percentile(v, 90)))}
               for k, v in pooled.items() if v}
    print(f"units rescaled, loaded groups ({ANCHORS} anchors): |error| median / p90")
    for k, s in summary.items():
        print(f"  {k:8s} {s['median']:6.1%} / {s['p90']:6.1%}")
    figures = {"space": args.space, "threads": args.threads, "units": len(chosen), "anchors": ANCHORS,
               "calm_probe_ms": calm_probe, "groups": groups, "errors": summary}
    return finish(args, figures)


if __name__ == "__main__":
    sys.exit(main())
