"""Units filled lazily while another process loads the machine: anchors against the probe, side by side.

What a search does on first use of a network (`LatencyModel.predict` measures its missing units as a
group) is done here for random networks of a space, each while a load runs (cycling through none, one
or two pure-Python spinners, a 1- or 2-thread torch matrix product), into two copies of one table:
one puts each group at the table's level by anchors (today's `measure_units`), the other by the block
probe timed around it (`anchored=False`, what every group used before). The order of the two
alternates from network to network, so both see the same loads.

Then, with the load gone, the units are filled again calm into a third copy (and a fourth: two calm fills differ by the host's noise
floor), every one of those
networks is measured end to end at the table's level (`measure_networks`, the harness that agrees
with `torch.utils.benchmark` within 1%), and the anchored table's slowed groups are timed again, as
a search does after its trials (`retime_disturbed`). Printed for each table: how far its entries are
from the calm ones (median |error|, share within 10% and within 2x), and its plain sums against the
networks (Spearman, and the share within 10% of the median ratio, i.e. what a linear correction could fit).

    python -m benchmarks.loaded_fill --networks 20 --json out.json
"""
from __future__ import annotations

import copy
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import finish, parse, parser
from benchmarks.anchor_tracking import running
from nas.latency import LatencyModel, open_table
from nas.space import load_space, plan, sample
from nas.stats import spearman
from proxies.latency import current_profile

QUICK = {"base": 2, "networks": 2, "passes": 1}
CYCLE = ["calm", "spin1", "torch2", "spin2", "torch1"]


def copy_model(model: LatencyModel, path: Path) -> LatencyModel:
    """A model on a copy of `model`'s table (entries and levels), written nowhere but `path`."""
    table = copy.deepcopy(model.table)
    table.path = path
    return LatencyModel(table)


def entry_errors(table, calm, texts: list[str]) -> dict:
    errors = np.array([table.entries[t].ms / calm.entries[t].ms for t in texts])
    logs = np.abs(np.log(errors))
    return {"median_abs_error": float(np.expm1(np.median(logs))), "within_10pct": float(np.mean(logs <= np.log(1.1))),
            "within_2x": float(np.mean(logs <= np.log(2))), "min_ratio": float(errors.min()),
            "max_ratio": float(errors.max())}


def sums_against(model: LatencyModel, space, archs, measured: list[float]) -> dict:
    sums = np.array([model.sum_ms(space, a) for a in archs])
    ratio = np.array(measured) / sums
    return {"spearman": spearman(list(sums), list(measured)),
            "within_10pct_of_median_ratio": float(np.mean(np.abs(ratio / np.median(ratio) - 1) <= 0.10)),
            "median_ratio": float(np.median(ratio))}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, threads=2)
    p.add_argument("--base", type=int, default=8, help="networks whose units fill the table first, calm")
    p.add_argument("--networks", type=int, default=20, help="networks whose new units are filled under load")
    p.add_argument("--passes", type=int, default=3, help="sweeps when the networks are measured end to end")
    args = parse(p, QUICK, argv)
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    profile = current_profile("torch", threads=args.threads)
    folder = Path(tempfile.mkdtemp(prefix="nas-loaded-fill-"))
    rng = random.Random(args.seed)
    base = LatencyModel(open_table(profile, folder / "base.json"))
    base.fill(space, [u for _ in range(args.base) for u in plan(space, sample(space, rng)).units])
    anchored, probed = copy_model(base, folder / "anchored.json"), copy_model(base, folder / "probed.json")
    archs = [sample(space, rng) for _ in range(args.networks)]

    new: list[str] = []
    began = time.monotonic()
    for i, (arch, load) in enumerate(zip(archs, itertools.cycle(CYCLE))):
        units = anchored.missing(space, plan(space, arch).units)
        new += [u.text for u in units]
        with running(load):
            order = [(anchored, True), (probed, False)][:: 1 if i % 2 == 0 else -1]
            for model, with_anchors in order:
                if units:
                    model.measure_units(space, units, anchored=with_anchors)
        print(f"  network {i + 1}/{len(archs)} ({load}): {len(units)} new units, {time.monotonic() - began:.0f} s",
              flush=True)

    calm = copy_model(base, folder / "calm.json")
    start = time.monotonic()
    calm.fill(space, [u for a in archs for u in plan(space, a).units])
    print(f"  the same units filled again, calm: {time.monotonic() - start:.0f} s", flush=True)
    floor = copy_model(base, folder / "floor.json")  # twice calm: how far two calm fills differ here
    floor.fill(space, [u for a in archs for u in plan(space, a).units])
    start = time.monotonic()
    measured = calm.measure_networks(space, archs, args.passes)
    print(f"  the networks measured end to end: {time.monotonic() - start:.0f} s", flush=True)
    figures = {"space": args.space, "threads": args.threads, "base_networks": args.base, "networks": args.networks,
               "new_units": len(new), "loads": CYCLE, "slowed_groups": anchored.disturbed_groups,
               "retimed_groups": anchored.retimed_groups, "anchor_ratios": anchored.anchor_ratios}
    print(f"{len(new)} units filled under load; anchored groups: {anchored.retimed_groups} re-timed, "
          f"{anchored.disturbed_groups} kept slow; anchors read {min(anchored.anchor_ratios, default=0):.2f}-"
          f"{max(anchored.anchor_ratios, default=0):.2f}x the level")
    before = copy.deepcopy(anchored.table)
    start = time.monotonic()
    timed, still = anchored.retime_disturbed(space)  # what a search does after its trials
    print(f"  {timed} units of slowed groups timed again, calm: {time.monotonic() - start:.0f} s, {still} still slow")
    figures["retimed_after_the_load"] = {"units": timed, "still_slow": still}
    rows = [("anchors", before), ("probe", probed.table), ("anchors, then slowed groups re-timed", anchored.table),
            ("calm again (the noise floor)", floor.table), ("calm", calm.table)]
    print("table\n           entries vs calm: median |error|  within 10%  within 2x  (range)    sums vs networks: "
          "Spearman  within 10% of median ratio")
    for name, table in rows:
        e = entry_errors(table, calm.table, new) if name != "calm" else None
        s = sums_against(LatencyModel(table, measure_missing=False), space, archs, measured)
        figures[name] = {"entries_vs_calm": e, "sums_vs_networks": s}
        entries = "" if e is None else (f"{e['median_abs_error']:21.1%} {e['within_10pct']:10.0%} {e['within_2x']:10.0%}"
                                        f"  ({e['min_ratio']:.2f}-{e['max_ratio']:.2f}x)")
        print(f"  {name}\n  {'':8s} {entries:57s} {s['spearman']:8.3f} {s['within_10pct_of_median_ratio']:12.0%}")
    return finish(args, figures)


if __name__ == "__main__":
    sys.exit(main())
