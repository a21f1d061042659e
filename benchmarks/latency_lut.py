"""Benchmark: build a latency table for a space, validate it end to end, and time predictions.

Prints the number of unique units of every shipped space, the minutes the
table build took, the validation figures (share within +-10% of measured
end-to-end latency, MAPE, Spearman, Kendall) on random networks that the
correction was not fitted on, and the median time to predict a new
candidate from the warm table.

    python benchmarks/latency_lut.py --space search_spaces/sandglass.yaml --threads 2 --samples 100 --json out.json
"""
from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from nas.latency import LatencyModel, open_table, validate  # noqa: E402
from nas.space import load_space, unique_units  # noqa: E402
from predict_speed import time_predictions  # noqa: E402  (this folder)
from proxies.latency import current_profile  # noqa: E402


def bar(desc: str):
    return lambda items: tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="search_spaces/sandglass.yaml")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lut", help="table file (default: a fresh one in a temporary folder)")
    parser.add_argument("--samples", type=int, default=100, help="validation networks")
    parser.add_argument("--fit", type=int, default=20, help="networks the correction is fitted on")
    parser.add_argument("--passes", type=int, default=3, help="interleaved end-to-end sweeps")
    parser.add_argument("--unit-passes", type=int, default=1, help="sweeps over the units when building")
    parser.add_argument("--predictions", type=int, default=2000, help="candidates timed for prediction speed")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    counts = {Path(f).name: len(unique_units(load_space(f))) for f in sorted(glob.glob("search_spaces/*.yaml"))}
    for name, n in counts.items():
        print(f"unique units: {name:<22} {n:>6}")

    space = load_space(args.space)
    profile = current_profile(args.backend, threads=args.threads, batch_size=args.batch_size)
    path = Path(args.lut) if args.lut else Path(tempfile.mkdtemp(prefix="nas-lut-")) / f"{profile.id}.json"
    model = LatencyModel(open_table(profile, path))
    units = list(unique_units(space).values())
    start = time.perf_counter()
    measured = model.fill(space, units, bar("building table"), passes=args.unit_passes)
    build_min = (time.perf_counter() - start) / 60
    print(f"table: {len(model.table)} entries ({measured} measured now) in {build_min:.1f} min -> {path}")

    model.fit_correction(space, n=args.fit, passes=args.passes, progress=bar("fitting correction"))
    model.table.save()
    c = model.table.correction
    print(f"correction: measured = {c.scale:.4f} x sum {c.per_unit_ms:+.4f} ms x units {c.offset_ms:+.3f} ms "
          f"(fit MAPE {c.mape:.1%} on {c.n} networks)")
    report = validate(model, space, args.samples, passes=args.passes, progress=bar("validating"))
    print(f"validation on {report['n']} networks: within +-10% {report['within_10pct']:.1%}, "
          f"MAPE {report['mape']:.2%}, Spearman {report['spearman']:.4f}, Kendall {report['kendall']:.4f}")
    raw = report["raw"]
    print(f"  against raw medians (no drift correction): within +-10% {raw['within_10pct']:.1%}, "
          f"MAPE {raw['mape']:.2%}, Spearman {raw['spearman']:.4f}, Kendall {raw['kendall']:.4f}")
    print(f"  drift: the reference network moved {report['drift_cv']:.1%} (CV) between groups")
    if report["measurement_cv"] is not None:
        print(f"noise floor: one network's end-to-end median moved {report['measurement_cv']:.1%} (median CV) "
              f"between its {report['passes']} passes")

    times = time_predictions(LatencyModel(model.table, measure_missing=False), args.space,
                             warm=args.predictions // 2, candidates=args.predictions // 2, seed=50_000)
    predict_ms = statistics.median(times) * 1e3
    print(f"prediction from the warm table: median {predict_ms:.3f} ms per new candidate")

    figures = {
        "space": args.space, "profile": profile.to_dict(), "profile_id": profile.id,
        "unique_units": counts, "table_entries": len(model.table), "build_minutes": build_min,
        "unit_passes": args.unit_passes, "correction": c.to_dict(),
        "validation": report, "predict_ms_median": predict_ms,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
