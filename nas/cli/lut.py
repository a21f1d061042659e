"""`nas lut ...` commands: parse, call `nas.api`, print."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nas.cli._common import add_profile_options, bars, busy_note, latency_model, progress, say
from nas.errors import NasError


def _build(args: argparse.Namespace) -> int:
    from nas import api

    space = api.load_space(args.space)
    model = latency_model(args, path=args.out)
    done = api.build_table(space, model, fit=args.fit, refit=args.refit, passes=args.passes, say=say,
                           bars=bars(args.quiet))
    print(f"wrote {done.path}: {done.entries} entries")
    return 0


def _show(args: argparse.Namespace) -> int:
    from nas import api
    from nas.latency import describe

    info = api.table_info(args.file, args.space)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    print(f"{args.file}: {info.entries} entries, profile {info.profile_id}")
    for k, v in info.profile.items():
        print(f"  {k:<20} {v}")
    print("  correction           " + (describe(info.correction) if info.correction else "none fitted"))
    print("  speed level          " + (f"the probe took {info.level_ms:.3f} ms" if info.level_ms is not None
                                      else "none (nothing measured here yet, or imported from a device)"))
    print("  network level        " + (f"the network probe took {info.network_level_ms:.2f} ms"
                                      if info.network_level_ms is not None else "none (no network timed yet)"))
    if info.coverage is not None:
        cov = info.coverage
        print(f"coverage of {cov['space']}: {cov['covered']}/{cov['units']} units ({cov['fraction']:.1%})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from nas import api

    if args.samples < 2:
        raise NasError(f"--samples must be at least 2, got {args.samples}")
    space = api.load_space(args.space)
    model = latency_model(args, measure_missing=not args.no_measure)
    report = api.validate_table(model, space, args.samples, seed=args.seed, fit=args.fit, refit=args.refit,
                                passes=args.passes, say=say, bars=bars(args.quiet))
    if args.json:
        report.pop("rows") if not args.rows else None
        print(json.dumps(report, indent=2))
        return 0
    _print_validation(space.name, report, model.table.correction)
    return 0


def _print_validation(space: str, report: dict[str, Any], correction: Any) -> None:
    from nas.latency import describe

    print(f"{space} on {report['profile']}: {report['n']} random networks, measured end to end")
    print(f"  within +-10%   {report['within_10pct']:.1%}")
    print(f"  MAPE           {report['mape']:.2%}")
    print(f"  Spearman       {report['spearman']:.4f}")
    print(f"  Kendall        {report['kendall']:.4f}")
    raw = report["raw"]
    print(f"  (figures above are at the table's speed level, through the network probe timed before and after "
          f"each network; against the medians as timed: within +-10% {raw['within_10pct']:.1%}, MAPE {raw['mape']:.2%}, "
          f"Spearman {raw['spearman']:.4f}; the machine ran at {report['speed']:.2f}x the level, moving "
          f"{report['drift_cv']:.1%} between groups)")
    if report["measurement_cv"] is not None:
        print(f"  noise floor    a network's end-to-end figure moved {report['measurement_cv']:.1%} (median CV) "
              f"between its {report['passes']} passes")
    if report["advice"]:
        print(f"  note           {report['advice']}")
    note = busy_note(report["busy_unit_groups"], "the networks")
    if note:
        print(f"  note           {note}")
    if correction:
        print(f"  correction     {describe(correction)}; fit networks are never validated")
    print("  worst cases:")
    for r in report["worst"]:
        print(f"    {r['error']:+.1%}  predicted {r['predicted_ms']:.2f} ms, measured {r['measured_ms']:.2f} ms  {r['arch'][:80]}")


# --- remote devices: `nas lut export-ops` / `nas lut import` (nas/latency/remote.py) -----------
def _export_ops(args: argparse.Namespace) -> int:
    from nas import api

    space = api.load_space(args.space)
    done = api.export_ops(space, args.out, batch_size=args.batch_size, samples=args.samples, seed=args.seed,
                          progress=progress(not args.quiet, "exporting units", "unit"))
    print(f"{space.name}: {done.units} unique units, {done.kept} already exported, {done.exported} exported "
          f"in {done.seconds:.1f} s", file=sys.stderr)
    print(f"wrote {done.manifest}: {done.rows} files ({done.bytes / 1e6:,.1f} MB) in {done.dir / 'ops'}; "
          f"time them on the device and fill in {done.dir / 'results_template.csv'} (see {done.dir / 'README.txt'})")
    return 0


def _import(args: argparse.Namespace) -> int:
    from nas import api

    table = api.import_results(args.csv, device=args.device, backend=args.backend, threads=args.threads,
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

    # --- remote devices: `nas lut export-ops` / `nas lut import` (nas/latency/remote.py) -------
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
