"""Benchmark: predicted latency against an independent referee timing the exported model.

The referee is not our harness: each random network is exported as the user ships it
(`nas export`: a standalone .py, a TorchScript file or an ONNX file) and timed alone, warm and
back to back, with a standard tool: `torch.utils.benchmark.Timer.blocked_autorange` for torch
and TorchScript, a plain `InferenceSession.run` loop for ONNX Runtime (its default session
options but the thread count). Each network is timed in `--referee-passes` passes in shuffled
order and keeps its median. The network probe is read right before and after every referee timing, so
the machine's speed against the table's level is known: figures are reported both as timed
(raw) and at the table's level (each timing times level / the network probe beside it).

The table comes from one of:
  --table build    a fresh full build (`nas lut build`: every unit, then a correction on 20 networks)
  --table search   a fresh, empty cache filled only by a `--trials` search (what `make run` does)
  --lut FILE       an existing table (with --refit: its correction fitted again now, on --fit networks)

Figures: table build time, the correction, our own end-to-end measurement against the
prediction (as `nas lut validate` reports it), the referee against the prediction, our
measurement against the referee (do the two definitions agree?), the referee's first pass
against its second (the noise floor: how far two plain timings of one network disagree here),
interval coverage, and the prediction time.

    python -m benchmarks.latency_truth --space search_spaces/sandglass.yaml --table build --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from benchmarks._common import finish, median_ms, parse, parser, timed
from benchmarks._latency import at_level, beside_probe, network_level, referee_callable
from benchmarks.predict_speed import time_predictions
from nas import api
from nas.latency import LatencyModel, MissingEntryError, model_for, open_table
from nas.space import SearchSpace, encode, load_space, plan, sample, unique_units
from nas.stats import spearman
from proxies.latency import DeviceProfile, current_profile

VALIDATION_SEED = 7_000_000  # apart from the fit's stream and validate's default
QUICK = {"threads": 1, "samples": 4, "fit": 4, "passes": 1, "referee_passes": 2, "referee_seconds": 0.05,
         "trials": 10}


def bar(desc: str) -> Callable[[Iterable], Iterable]:
    return lambda items: tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True)


def agreement(predicted, measured) -> dict:
    p, m = np.asarray(predicted), np.asarray(measured)
    errors = p / m - 1
    return {"within_10pct": float(np.mean(np.abs(errors) <= 0.10)), "mape": float(np.mean(np.abs(errors))),
            "median_error": float(np.median(errors)), "min_error": float(errors.min()),
            "max_error": float(errors.max()), "spearman": spearman(list(p), list(m))}


def line(label: str, a: dict) -> str:
    return (f"{label}: within +-10% {a['within_10pct']:.0%}, MAPE {a['mape']:.1%}, Spearman {a['spearman']:.3f}, "
            f"median error {a['median_error']:+.1%} (range {a['min_error']:+.1%} .. {a['max_error']:+.1%})")


# ---- the table --------------------------------------------------------------------------------------
def table_by_build(space, profile, folder: Path, fit: int, passes: int) -> tuple[LatencyModel, dict]:
    model = LatencyModel(open_table(profile, folder / f"{profile.id}.json"))
    seconds, _ = timed(model.fill, space, list(unique_units(space).values()), bar("building table"))
    model.fit_correction(space, n=fit, passes=passes, progress=bar("fitting correction"))
    model.table.save()
    return model, {"build_minutes": seconds / 60, "fit_note": model.last_fit_note}


def table_by_search(args, folder: Path) -> tuple[LatencyModel, dict]:
    os.environ["NAS_LUT_DIR"] = str(folder / "cache")
    seconds, result = timed(api.search, args.space, args.target, n_trials=args.trials, seed=args.seed,
                            run_dir=folder / "run", latency=model_for(args.backend, args.threads))
    model = model_for(args.backend, args.threads)
    best = result.summary.get("best") or {}
    return model, {"search_minutes": seconds / 60, "search_winner": best,
                   "search_machine_speed": result.summary.get("machine_speed"),
                   "busy_unit_groups": result.summary.get("busy_unit_groups"),
                   "correction_recalibrated": result.summary.get("correction_recalibrated"),
                   "entries_after_search": len(model.table)}


def the_table(args: argparse.Namespace, space: SearchSpace, profile: DeviceProfile, folder: Path
              ) -> tuple[LatencyModel, dict]:
    """The table of --lut or --table, and what making it found; prints both."""
    if args.lut:
        model, info = model_for(args.backend, args.threads, lut=args.lut), {"lut": args.lut}
        if args.refit:
            model.fit_correction(space, n=args.fit, passes=args.passes, progress=bar("fitting correction"))
            model.table.save()
            info["fit_note"] = model.last_fit_note
    elif args.table == "build":
        model, info = table_by_build(space, profile, folder, args.fit, args.passes)
    else:
        model, info = table_by_search(args, folder)
    c = model.table.correction
    info.update(table_entries=len(model.table), level_ms=model.table.reference.ms,
                network_level_ms=None if model.table.network_reference is None else model.table.network_reference.ms,
                correction=None if c is None else c.to_dict())
    print(f"table: {len(model.table)} entries; {json.dumps({k: v for k, v in info.items() if k != 'correction'})}")
    if c is not None:
        print(f"correction: measured = {c.scale:.4f} x sum {c.per_unit_ms:+.4f} ms x units {c.offset_ms:+.3f} ms "
              f"(fit MAPE {c.mape:.1%} on {c.n}; residual sd {c.residual_sd:.1%} on {c.residual_n})")
    return model, info


# ---- the referee ----------------------------------------------------------------------------------
def referee_timings(model: LatencyModel, refs: list[Callable[[], float]], passes: int
                    ) -> tuple[list[list[float]], list[list[float]]]:
    """Each network's referee timings over `passes` passes in shuffled order, and the network probe's reading
    beside each timing."""
    referee: list[list[float]] = [[] for _ in refs]
    beside: list[list[float]] = [[] for _ in refs]
    for p in range(passes):
        order = list(range(len(refs)))
        random.Random(p).shuffle(order)
        for i in tqdm(order, desc=f"referee pass {p + 1}", file=sys.stderr):
            timing, reading = beside_probe(model, refs[i])
            referee[i].append(timing)
            beside[i].append(reading)
    return referee, beside


def referee_summary(level: float, referee: list[list[float]], beside: list[list[float]]) -> dict[str, Any]:
    """Per network the referee's median as timed and at the table's level (each timing rescaled by the
    probe beside it exactly as our own figures are), and the machine's speed during the referee."""
    speeds = [b / level for bs in beside for b in bs]
    # The noise floor: the referee's first pass against its second, both at the level. Where two
    # plain timings of one network minutes apart agree on only N% within +-10%, no prediction can
    # be shown to agree with them on more.
    floor = None if len(referee[0]) < 2 else agreement(
        [at_level(level, ts[:1], bs[:1]) for ts, bs in zip(referee, beside)],
        [at_level(level, ts[1:2], bs[1:2]) for ts, bs in zip(referee, beside)])
    return {"level": [at_level(level, ts, bs) for ts, bs in zip(referee, beside)], "floor": floor,
            "raw": [float(np.median(r)) for r in referee],
            "cv": float(np.median([np.std(r) / np.mean(r) for r in referee])) if len(referee[0]) > 1 else None,
            "speeds": speeds, "speed": float(np.median(speeds))}


def print_comparisons(figures: dict[str, Any], space: SearchSpace, args: argparse.Namespace, speed_now: float,
                      model: LatencyModel) -> None:
    print(f"{args.samples} random networks of {space.name}, {args.backend}, {args.threads} threads "
          f"({figures['units_added_by_the_sample']} units added to the table by predicting them)")
    print(line("  vs our measurement (at the table's level)", figures["ours_at_level"]))
    print(line("  vs our measurement (raw)                 ", figures["ours_raw"]))
    print(line("  vs the referee (plain timing of the export)", figures["referee"]))
    print(line(f"  prediction x speed now ({speed_now:.2f}) vs the referee ", figures["referee_at_current_speed"]))
    print(line("  vs the referee at the table's level        ", figures["referee_at_level"]))
    print(line("  our raw measurement vs the referee        ", figures["ours_raw_vs_referee"]))
    print(line("  ours vs the referee, both at the level    ", figures["ours_vs_referee_at_level"]))
    if figures["referee_vs_itself_at_level"] is not None:
        print(line("  the referee's pass 1 vs its pass 2 (floor)", figures["referee_vs_itself_at_level"]))
    low, high = figures["machine_speed_range"]
    cv, drift = figures["referee_pass_cv"], figures["drift_cv"]
    print(f"  machine speed during the referee: median {figures['machine_speed_during_referee']:.3f} x the table's "
          f"level (range {low:.2f}-{high:.2f}; {figures['machine_speed_during_ours']:.3f} during ours); referee pass "
          f"CV {cv if cv is None else f'{cv:.1%}'}; our drift CV {drift:.1%}; {model.retimed_groups} groups re-timed")
    print(f"  90% interval: covers {figures['interval_coverage']:.0%} of referee timings, median half-width "
          f"{figures['interval_half_width']:.1%}")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, threads=2)
    p.add_argument("--backend", default="torch", choices=["torch", "torchscript", "onnxruntime"])
    p.add_argument("--table", choices=["build", "search"], default="build")
    p.add_argument("--lut", help="an existing table file instead of --table")
    p.add_argument("--refit", action="store_true", help="--lut: fit its correction again first")
    p.add_argument("--trials", type=int, default=200, help="--table search: trials")
    p.add_argument("--target", default="25ms", help="--table search: target latency")
    p.add_argument("--samples", type=int, default=50, help="random networks compared")
    p.add_argument("--fit", type=int, default=20)
    p.add_argument("--passes", type=int, default=3, help="our end-to-end sweeps")
    p.add_argument("--referee-passes", type=int, default=3)
    p.add_argument("--referee-seconds", type=float, default=0.5, help="min_run_time of each referee timing")
    args = parse(p, QUICK, argv)
    torch.set_num_threads(args.threads)

    space = load_space(args.space)
    profile = current_profile(args.backend, threads=args.threads)
    folder = Path(tempfile.mkdtemp(prefix="nas-truth-"))
    model, info = the_table(args, space, profile, folder)

    rng = random.Random(VALIDATION_SEED + args.seed)
    archs = [sample(space, rng) for _ in range(args.samples)]
    before = len(model.table)
    predictions = [model.predict(space, a) for a in archs]
    predicted = [p.ms for p in predictions]
    added = len(model.table) - before
    model.table.save()

    ours = model.measure_networks(space, archs, args.passes, bar("our measurement"))
    ours_raw, drift, ours_speed = list(model.last_raw), model.last_drift_cv, model.last_speed

    refs = [referee_callable(args.backend, space, a, folder, f"net{i}", args.threads, args.referee_seconds)
            for i, a in enumerate(tqdm(archs, desc="exporting", file=sys.stderr))]
    speed_now = model.current_speed()  # what a search started now would multiply its predictions by
    ref = referee_summary(network_level(model), *referee_timings(model, refs, args.referee_passes))
    figures = {
        "space": args.space, "backend": args.backend, "profile_id": profile.id, "samples": args.samples,
        "units_added_by_the_sample": added, **info,
        "ours_at_level": agreement(predicted, ours), "ours_raw": agreement(predicted, ours_raw),
        "referee": agreement(predicted, ref["raw"]),
        "machine_speed_at_start": speed_now,
        "referee_at_current_speed": agreement([p * speed_now for p in predicted], ref["raw"]),
        "referee_at_level": agreement(predicted, ref["level"]),
        "ours_vs_referee_at_level": agreement(ours, ref["level"]),
        "ours_raw_vs_referee": agreement(ours_raw, ref["raw"]),
        "referee_vs_itself_at_level": ref["floor"],
        "machine_speed_during_referee": ref["speed"],
        "machine_speed_range": [float(min(ref["speeds"])), float(max(ref["speeds"]))],
        "referee_pass_cv": ref["cv"], "drift_cv": drift, "retimed_groups": model.retimed_groups,
        "machine_speed_during_ours": ours_speed,
        "interval_coverage": float(np.mean([p.low_ms <= r <= p.high_ms for p, r in zip(predictions, ref["level"])])),
        "interval_half_width": float(np.median([(p.high_ms - p.low_ms) / 2 / p.ms for p in predictions])),
        # Per network, with what it is (arch code, units) and the plain sum, so that outliers can be studied.
        "rows": [{"arch": encode(space, a), "units": len(plan(space, a).units), "sum_ms": model.sum_ms(space, a),
                  "predicted_ms": p.ms, "low_ms": p.low_ms, "high_ms": p.high_ms, "ours_ms": o, "ours_raw_ms": r,
                  "referee_ms": f, "referee_level_ms": fl}
                 for a, p, o, r, f, fl in zip(archs, predictions, ours, ours_raw, ref["raw"], ref["level"])],
    }
    print_comparisons(figures, space, args, speed_now, model)
    if args.table == "build" or args.lut:  # a partial table would time measurements, not predictions
        try:
            times = time_predictions(LatencyModel(model.table, measure_missing=False), args.space, warm=500,
                                     candidates=500, seed=50_000)
        except MissingEntryError:  # --lut named a table a search filled: it lacks most candidates' units
            print("prediction: not timed (the table lacks units of the candidates it would predict; a full "
                  "table from `nas lut build` has them)")
        else:
            figures["predict_ms_median"] = median_ms(times)
            print(f"prediction: median {figures['predict_ms_median']:.3f} ms per new candidate")
    return finish(args, figures)


if __name__ == "__main__":
    sys.exit(main())
