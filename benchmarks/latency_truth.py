"""Benchmark: predicted latency against an independent referee timing the exported model.

The referee is not our harness: each random network is exported as the user ships it
(`nas export`: a standalone .py, a TorchScript file or an ONNX file) and timed alone, warm and
back to back, with a standard tool: `torch.utils.benchmark.Timer.blocked_autorange` for torch
and TorchScript, a plain `InferenceSession.run` loop for ONNX Runtime (its default session
options but the thread count). Each network is timed in `--referee-passes` passes in shuffled
order and keeps its median. The probe is read right before and after every referee timing, so
the machine's speed against the table's level is known: figures are reported both as timed
(raw) and at the table's level (each timing times level / the probe beside it).

The table comes from one of:
  --table build    a fresh full build (`nas lut build`: every unit, then a correction on 20 networks)
  --table search   a fresh, empty cache filled only by a `--trials` search (what `make run` does)
  --lut FILE       an existing table

Figures: table build time, the correction, our own end-to-end measurement against the
prediction (as `nas lut validate` reports it), the referee against the prediction, our
measurement against the referee (do the two definitions agree?), interval coverage, and the
prediction time.

    python benchmarks/latency_truth.py --space search_spaces/sandglass.yaml --table build --json out.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from nas.latency import LatencyModel, model_for, open_table  # noqa: E402
from nas.space import load_space, plan, sample, unique_units  # noqa: E402
from nas.stats import spearman  # noqa: E402
from predict_speed import time_predictions  # noqa: E402  (this folder)
from proxies.latency import current_profile  # noqa: E402
from proxies.latency.reference import level_factor  # noqa: E402

VALIDATION_SEED = 7_000_000  # apart from the fit's stream and validate's default


def bar(desc: str):
    return lambda items: tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True)


# ---- the referee ----------------------------------------------------------------------------------
def _import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timer_ms(model, x: torch.Tensor, threads: int, min_run_time: float) -> float:
    import torch.utils.benchmark as benchmark

    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        model(x)
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def referee_callable(backend: str, space, arch, folder: Path, name: str, threads: int, min_run_time: float):
    """A function timing the exported network of `arch` with a standard tool, in ms per call."""
    from nas.export import export_onnx, export_python, export_torchscript

    shape = plan(space, arch).input_shape
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    if backend == "torch":
        model = _import_file(export_python(space, arch, folder / f"{name}.py")).build_model().eval()
        return lambda: _timer_ms(model, x, threads, min_run_time)
    if backend == "torchscript":
        model = torch.jit.freeze(torch.jit.load(str(export_torchscript(space, arch, folder / f"{name}.pt"))).eval())
        return lambda: _timer_ms(model, x, threads, min_run_time)
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(export_onnx(space, arch, folder / f"{name}.onnx")), options,
                                       providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}

        def plain_loop() -> float:
            for _ in range(5):
                session.run(None, feed)
            times, spent = [], 0.0
            while spent < min_run_time or len(times) < 10:
                start = time.perf_counter()
                session.run(None, feed)
                times.append(time.perf_counter() - start)
                spent += times[-1]
            return statistics.median(times) * 1e3
        return plain_loop
    raise SystemExit(f"no referee for backend {backend!r}")


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
    start = time.perf_counter()
    model.fill(space, list(unique_units(space).values()), bar("building table"))
    minutes = (time.perf_counter() - start) / 60
    model.fit_correction(space, n=fit, passes=passes, progress=bar("fitting correction"))
    model.table.save()
    return model, {"build_minutes": minutes, "fit_note": model.last_fit_note}


def table_by_search(args, folder: Path) -> tuple[LatencyModel, dict]:
    from nas import api

    os.environ["NAS_LUT_DIR"] = str(folder / "cache")
    start = time.perf_counter()
    result = api.search(args.space, args.target, n_trials=args.trials, seed=args.seed, run_dir=folder / "run",
                        latency=model_for(args.backend, args.threads))
    minutes = (time.perf_counter() - start) / 60
    model = model_for(args.backend, args.threads)
    best = result.summary.get("best") or {}
    return model, {"search_minutes": minutes, "search_winner": best,
                   "search_machine_speed": result.summary.get("machine_speed"),
                   "entries_after_search": len(model.table)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="search_spaces/sandglass.yaml")
    parser.add_argument("--backend", default="torch", choices=["torch", "torchscript", "onnxruntime"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", choices=["build", "search"], default="build")
    parser.add_argument("--lut", help="an existing table file instead of --table")
    parser.add_argument("--trials", type=int, default=200, help="--table search: trials")
    parser.add_argument("--target", default="25ms", help="--table search: target latency")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=50, help="random networks compared")
    parser.add_argument("--fit", type=int, default=20)
    parser.add_argument("--passes", type=int, default=3, help="our end-to-end sweeps")
    parser.add_argument("--referee-passes", type=int, default=3)
    parser.add_argument("--referee-seconds", type=float, default=0.5, help="min_run_time of each referee timing")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    space = load_space(args.space)
    profile = current_profile(args.backend, threads=args.threads)
    folder = Path(tempfile.mkdtemp(prefix="nas-truth-"))
    if args.lut:
        model, info = model_for(args.backend, args.threads, lut=args.lut), {"lut": args.lut}
    elif args.table == "build":
        model, info = table_by_build(space, profile, folder, args.fit, args.passes)
    else:
        model, info = table_by_search(args, folder)
    c = model.table.correction
    info.update(table_entries=len(model.table), level_ms=model.table.reference.ms,
                correction=None if c is None else c.to_dict())
    print(f"table: {len(model.table)} entries; {json.dumps({k: v for k, v in info.items() if k != 'correction'})}")
    if c is not None:
        print(f"correction: measured = {c.scale:.4f} x sum {c.per_unit_ms:+.4f} ms x units {c.offset_ms:+.3f} ms "
              f"(fit MAPE {c.mape:.1%} on {c.n}; residual sd {c.residual_sd:.1%} on {c.residual_n})")

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
    referee: list[list[float]] = [[] for _ in archs]
    beside: list[list[float]] = [[] for _ in archs]  # the probe's reading right before and after each timing
    level = model.table.reference.ms
    speed_now = model.current_speed()  # what a search started now would multiply its predictions by
    for p in range(args.referee_passes):
        order = list(range(len(archs)))
        random.Random(p).shuffle(order)
        for i in tqdm(order, desc=f"referee pass {p + 1}", file=sys.stderr):
            before = model.probe_ms()
            referee[i].append(refs[i]())
            beside[i].append((before * model.probe_ms()) ** 0.5)
    # The referee at the table's level: each timing rescaled by the probe beside it exactly as our
    # own figures are (level_factor), medians over passes.
    referee_level = [float(np.median([t * level_factor(level, b) for t, b in zip(ts, bs)]))
                     for ts, bs in zip(referee, beside)]
    speeds = [b / level for bs in beside for b in bs]
    referee_ms = [float(np.median(r)) for r in referee]
    referee_cv = float(np.median([np.std(r) / np.mean(r) for r in referee])) if args.referee_passes > 1 else None
    speed = float(np.median(speeds))

    figures = {
        "space": args.space, "backend": args.backend, "profile_id": profile.id, "samples": args.samples,
        "units_added_by_the_sample": added, **info,
        "ours_at_level": agreement(predicted, ours), "ours_raw": agreement(predicted, ours_raw),
        "referee": agreement(predicted, referee_ms),
        "machine_speed_at_start": speed_now,
        "referee_at_current_speed": agreement([p * speed_now for p in predicted], referee_ms),
        "referee_at_level": agreement(predicted, referee_level),
        "ours_vs_referee_at_level": agreement(ours, referee_level),
        "ours_raw_vs_referee": agreement(ours_raw, referee_ms),
        "machine_speed_during_referee": speed, "machine_speed_range": [float(min(speeds)), float(max(speeds))],
        "referee_pass_cv": referee_cv, "drift_cv": drift, "retimed_groups": model.retimed_groups,
        "machine_speed_during_ours": ours_speed,
        "interval_coverage": float(np.mean([p.low_ms <= r <= p.high_ms for p, r in zip(predictions, referee_level)])),
        "interval_half_width": float(np.median([(p.high_ms - p.low_ms) / 2 / p.ms for p in predictions])),
        "rows": [{"predicted_ms": p.ms, "low_ms": p.low_ms, "high_ms": p.high_ms, "ours_ms": o, "ours_raw_ms": r,
                  "referee_ms": f, "referee_level_ms": fl}
                 for p, o, r, f, fl in zip(predictions, ours, ours_raw, referee_ms, referee_level)],
    }
    print(f"{args.samples} random networks of {space.name}, {args.backend}, {args.threads} threads "
          f"({added} units added to the table by predicting them)")
    print(line("  vs our measurement (at the table's level)", figures["ours_at_level"]))
    print(line("  vs our measurement (raw)                 ", figures["ours_raw"]))
    print(line("  vs the referee (plain timing of the export)", figures["referee"]))
    print(line(f"  prediction x speed now ({speed_now:.2f}) vs the referee ", figures["referee_at_current_speed"]))
    print(line("  vs the referee at the table's level        ", figures["referee_at_level"]))
    print(line("  our raw measurement vs the referee        ", figures["ours_raw_vs_referee"]))
    print(line("  ours vs the referee, both at the level    ", figures["ours_vs_referee_at_level"]))
    print(f"  machine speed during the referee: median {speed:.3f} x the table's level (range "
          f"{min(speeds):.2f}-{max(speeds):.2f}; {ours_speed:.3f} during ours); referee pass CV "
          f"{referee_cv if referee_cv is None else f'{referee_cv:.1%}'}; our drift CV {drift:.1%}; "
          f"{model.retimed_groups} groups re-timed")
    print(f"  90% interval: covers {figures['interval_coverage']:.0%} of referee timings, median half-width "
          f"{figures['interval_half_width']:.1%}")
    if args.table == "build" or args.lut:  # a partial table would time measurements, not predictions
        times = time_predictions(LatencyModel(model.table, measure_missing=False), args.space, warm=500,
                                 candidates=500, seed=50_000)
        figures["predict_ms_median"] = statistics.median(times) * 1e3
        print(f"prediction: median {figures['predict_ms_median']:.3f} ms per new candidate")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
