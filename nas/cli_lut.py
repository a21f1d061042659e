"""`nas lut ...` commands and the device-profile options shared with `nas arch stats`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from nas.errors import NasError


def add_profile_options(p: argparse.ArgumentParser, *, lut: bool = True) -> None:
    """--backend/--threads/--batch-size select the device profile; --lut picks the table file."""
    p.add_argument("--backend", default="torch", help="torch, torchscript, onnxruntime or cuda (default torch)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help=f"intra-op threads (default: all {os.cpu_count()} cores)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    if lut:
        p.add_argument("--lut", metavar="FILE", help="latency table file (default: one per profile in "
                       "$NAS_LUT_DIR or ~/.cache/mobile-nas/latency)")


def progress(enabled: bool, desc: str, unit: str) -> Any:
    """A tqdm wrapper for loops, or None when quiet."""
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)


def latency_model(args: argparse.Namespace, *, path: str | None = None, measure_missing: bool = True) -> Any:
    """The table for the profile the options describe (`nas.latency.model_for`)."""
    from nas.latency import model_for

    return model_for(args.backend, args.threads, args.batch_size, path or getattr(args, "lut", None) or None,
                     measure_missing)


def _build(args: argparse.Namespace) -> int:
    from nas.space import load_space, unique_units

    space = load_space(args.space)
    model = latency_model(args, path=args.out)
    units = list(unique_units(space).values())
    todo = model.missing(space, units)
    print(f"{space.name}: {len(units)} unique units, {len(units) - len(todo)} already in "
          f"{model.table.path}, measuring {len(todo)} on profile {model.profile.id}", file=sys.stderr)
    model.fill(space, todo, progress(not args.quiet, "measuring units", "unit"), passes=args.passes)
    _count_units(space, units, args.quiet)
    if args.fit > 0 and (model.table.correction is None or args.refit):
        c = model.fit_correction(space, n=args.fit, progress=progress(not args.quiet, "fitting correction", "run"))
        print(f"correction: {describe(c)}", file=sys.stderr)
        if model.last_fit_note:
            print(f"warning: {model.last_fit_note}", file=sys.stderr)
    model.table.save()
    print(f"wrote {model.table.path}: {len(model.table)} entries")
    return 0


def _count_units(space: Any, units: list, quiet: bool) -> None:
    """Warm the per-unit fvcore counts too, so a search after a build never traces a unit."""
    from nas.cost import CostModel

    costs = CostModel.persistent()
    todo = [u for u in units if not costs.has(u)]
    bar = progress(not quiet and bool(todo), "counting units", "unit")
    for unit in bar(todo) if bar else todo:
        costs.unit_counts(unit, space)
    costs.save()


def describe(c: Any) -> str:
    residuals = (f"; residuals on {c.residual_n} unseen networks: mean {c.residual_mean:+.1%}, sd {c.residual_sd:.1%}"
                 if c.residual_n else "")
    return (f"measured = {c.scale:.4f} x sum {c.per_unit_ms:+.4f} ms x units {c.offset_ms:+.3f} ms "
            f"(fit on {c.n} networks, MAPE {c.mape:.1%}{residuals})")


def _show(args: argparse.Namespace) -> int:
    from proxies.latency import LatencyTable

    table = LatencyTable.load(args.file)
    info: dict[str, Any] = {"file": args.file, "profile_id": table.profile.id, "profile": table.profile.to_dict(),
                            "entries": len(table), "correction": None}
    if table.correction is not None:
        info["correction"] = table.correction.to_dict()
    info["level_ms"] = table.reference.ms if table.reference is not None else None
    if args.space:
        from nas.space import load_space, unique_units

        space = load_space(args.space)
        keys = unique_units(space)
        have = sum(1 for k in keys if k in table)
        info["coverage"] = {"space": args.space, "units": len(keys), "covered": have,
                            "fraction": have / len(keys)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.file}: {info['entries']} entries, profile {info['profile_id']}")
    for k, v in info["profile"].items():
        print(f"  {k:<20} {v}")
    print("  correction           " + (describe(table.correction) if table.correction else "none fitted"))
    print("  speed level          " + (f"the probe took {info['level_ms']:.3f} ms" if info["level_ms"] is not None
                                      else "none (nothing measured here yet, or imported from a device)"))
    if "coverage" in info:
        cov = info["coverage"]
        print(f"coverage of {cov['space']}: {cov['covered']}/{cov['units']} units ({cov['fraction']:.1%})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from nas.latency import validate
    from nas.space import load_space

    if args.samples < 2:
        raise NasError(f"--samples must be at least 2, got {args.samples}")
    space = load_space(args.space)
    model = latency_model(args, measure_missing=not args.no_measure)
    try:
        if (model.table.correction is None or args.refit) and args.fit > 0:
            model.fit_correction(space, n=args.fit, passes=args.passes,
                                 progress=progress(not args.quiet, "fitting correction", "run"))
            if model.last_fit_note:
                print(f"warning: {model.last_fit_note}", file=sys.stderr)
        report = validate(model, space, args.samples, seed=args.seed, passes=args.passes,
                          progress=progress(not args.quiet, "validating", "run"))
    finally:
        model.table.save()
    if args.json:
        report.pop("rows") if not args.rows else None
        print(json.dumps(report, indent=2))
        return 0
    print(f"{space.name} on {report['profile']}: {report['n']} random networks, measured end to end")
    print(f"  within +-10%   {report['within_10pct']:.1%}")
    print(f"  MAPE           {report['mape']:.2%}")
    print(f"  Spearman       {report['spearman']:.4f}")
    print(f"  Kendall        {report['kendall']:.4f}")
    raw = report["raw"]
    print(f"  (figures above are at the table's speed level, through the probe timed before and after each "
          f"group; against the medians as timed: within +-10% {raw['within_10pct']:.1%}, MAPE {raw['mape']:.2%}, "
          f"Spearman {raw['spearman']:.4f}; the machine ran at {report['speed']:.2f}x the level, moving "
          f"{report['drift_cv']:.1%} between groups)")
    if report["measurement_cv"] is not None:
        print(f"  noise floor    a network's end-to-end figure moved {report['measurement_cv']:.1%} (median CV) "
              f"between its {report['passes']} passes")
    if model.table.correction:
        print(f"  correction     {describe(model.table.correction)}; fit networks are never validated")
    print("  worst cases:")
    for r in report["worst"]:
        print(f"    {r['error']:+.1%}  predicted {r['predicted_ms']:.2f} ms, measured {r['measured_ms']:.2f} ms  {r['arch'][:80]}")
    return 0


# --- remote devices: `nas lut export-ops` / `nas lut import` (nas/remote.py) -------------------
def _export_ops(args: argparse.Namespace) -> int:
    from nas.remote import export_ops
    from nas.space import load_space

    space = load_space(args.space)
    done = export_ops(space, args.out, batch_size=args.batch_size, samples=args.samples, seed=args.seed,
                      progress=progress(not args.quiet, "exporting units", "unit"))
    print(f"{space.name}: {done.units} unique units, {done.kept} already exported, {done.exported} exported "
          f"in {done.seconds:.1f} s", file=sys.stderr)
    print(f"wrote {done.manifest}: {done.rows} files ({done.bytes / 1e6:,.1f} MB) in {done.dir / 'ops'}; "
          f"time them on the device and fill in {done.dir / 'results_template.csv'} (see {done.dir / 'README.txt'})")
    return 0


def _import(args: argparse.Namespace) -> int:
    from nas.remote import import_results

    table = import_results(args.csv, device=args.device, backend=args.backend, threads=args.threads,
                           batch_size=args.batch_size, out=args.out)
    print(f"wrote {table.path}: {len(table)} entries, profile {table.profile.id}")
    return 0
# --- end remote devices ----------------------------------------------------------------------


def register(groups: Any) -> None:
    lut = groups.add_parser("lut", help="on-device latency lookup tables")
    cmds = lut.add_subparsers(dest="command", required=True, metavar="{build,show,validate,export-ops,import}")

    p = cmds.add_parser("build", help="measure every unique unit of a space into a latency table "
                                      "(resumable: a kill loses at most the group of 32 units being timed)")
    p.add_argument("--space", required=True, help="search space YAML")
    add_profile_options(p, lut=False)
    p.add_argument("--out", metavar="FILE", help="table file (default: the per-user cache, one file per profile)")
    p.add_argument("--fit", type=int, default=20, help="networks measured end to end to fit the correction (0: none)")
    p.add_argument("--refit", action="store_true", help="fit the correction again even if the table has one")
    p.add_argument("--passes", type=int, default=1,
                   help="sweeps over the new units; each entry keeps the median (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_build)

    p = cmds.add_parser("show", help="profile, entry count, correction and coverage of a space")
    p.add_argument("file")
    p.add_argument("--space", help="report how many of this space's units the table covers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_show)

    p = cmds.add_parser("validate", help="prediction vs end-to-end measurement on random networks")
    p.add_argument("--space", required=True)
    p.add_argument("--samples", type=int, default=100, help="random networks to measure (default 100)")
    p.add_argument("--seed", type=int, default=0)
    add_profile_options(p)
    p.add_argument("--fit", type=int, default=20, help="networks to fit the correction on if the table has none")
    p.add_argument("--refit", action="store_true", help="fit the correction again even if the table has one")
    p.add_argument("--passes", type=int, default=3,
                   help="interleaved sweeps over the networks; each keeps its median (default 3)")
    p.add_argument("--no-measure", action="store_true", help="fail on units missing from the table instead of measuring")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rows", action="store_true", help="with --json, include every network's row")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_validate)

    # --- remote devices: `nas lut export-ops` / `nas lut import` (nas/remote.py) ---------------
    p = cmds.add_parser("export-ops", help="write each unique unit of a space as ONNX, with a manifest of keys, "
                        "to time on another device (resumable)")
    p.add_argument("--space", required=True, help="search space YAML")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for ops/*.onnx, manifest.csv, "
                   "results_template.csv and README.txt")
    p.add_argument("--batch-size", type=int, default=1, help="static batch size of the exported files (default 1)")
    p.add_argument("--samples", type=int, help="only the units of this many random networks (a whole large "
                   "space can be tens of GB); run again with more to extend")
    p.add_argument("--seed", type=int, default=0, help="seed for --samples (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_export_ops)

    p = cmds.add_parser("import", help="turn a device's timings (results.csv: key or file, ms) into a latency table")
    p.add_argument("csv", metavar="CSV", help="results CSV: columns key (or file, with manifest.csv beside it) "
                   "and ms (median ms), optionally spread_ms and runs")
    p.add_argument("--device", required=True, help="your name for the device, e.g. 'Pixel 8 CPU'")
    p.add_argument("--backend", required=True, help="short name of the runtime that timed it, e.g. tflite, ort-mobile")
    p.add_argument("--threads", type=int, default=1, help="threads the runtime used (default 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size of the timed files (default: the manifest's, else 1)")
    p.add_argument("--out", metavar="FILE", help="table file (default: <profile id>.json beside the CSV)")
    p.set_defaults(func=_import)
    # --- end remote devices ----------------------------------------------------------------------
