"""Latency pieces several benchmarks share: the referee, timings read beside the probe, and tables.

The referee is not our harness: a network exported as the user ships it (`nas export`: a
standalone .py, a TorchScript file or an ONNX file), timed alone, warm and back to back, with a
standard tool (`torch.utils.benchmark.Timer.blocked_autorange`, or a plain `InferenceSession.run`
loop for ONNX Runtime with its default session options but the thread count).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from nas import api
from nas.latency import LatencyModel
from nas.space import SearchSpace, load_space, plan, unique_units
from proxies.latency import Entry, LatencyTable, current_profile
from proxies.latency.allocator import keep_freed_memory
from proxies.latency.reference import NETWORK_PROBE_BAND, level_factor


# ---- the referee ----------------------------------------------------------------------------------
def _import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timer_ms(model: Any, x: torch.Tensor, threads: int, min_run_time: float) -> float:
    import torch.utils.benchmark as benchmark

    keep_freed_memory()  # the definition of latency: a process that keeps freed memory (no page faults per call)
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        model(x)
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _plain_loop(session: Any, feed: Mapping[str, Any], min_run_time: float) -> Callable[[], float]:
    def run() -> float:
        for _ in range(5):
            session.run(None, feed)
        times, spent = [], 0.0
        while spent < min_run_time or len(times) < 10:
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
            spent += times[-1]
        return statistics.median(times) * 1e3
    return run


def exported_file_referee(path: Path, x: torch.Tensor, threads: int, min_run_time: float) -> Callable[[], float]:
    """A function timing the standalone .py at `path` (`nas export --format py`, a run's best_model.py) with a
    standard tool, in ms per call; the model is built afresh for each timing."""
    return lambda: _timer_ms(_import_file(path).build_model().eval(), x, threads, min_run_time)


# A fresh Python process with glibc's default malloc (no MALLOC_* settings, nothing of this package
# imported) timing the file as a user's first try would: Timer's median, in ms, on stdout.
_DEFAULT_PROCESS = """
import importlib.util, sys, torch, torch.utils.benchmark as benchmark
path, threads, seconds, shape = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), [int(n) for n in sys.argv[4:]]
spec = importlib.util.spec_from_file_location("exported", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
torch.set_num_threads(threads)
model = module.build_model().eval()
x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    model(x)
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    print(timer.blocked_autorange(min_run_time=seconds).median * 1e3)
"""


def default_allocator_timing_ms(path: Path, shape: Sequence[int], threads: int, min_run_time: float) -> float:
    """The exported file at `path` timed with `torch.utils.benchmark.Timer` in a fresh process on glibc's
    default malloc settings: what a user's plain timing reads before keeping freed memory
    (proxies.latency.allocator), to report beside the referee."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", _DEFAULT_PROCESS, str(path), str(threads), str(min_run_time),
                           *map(str, shape)], capture_output=True, text=True, env=env, timeout=600, check=True)
    return float(done.stdout.split()[-1])


def referee_callable(backend: str, space: SearchSpace, arch: Mapping[str, Any], folder: Path, name: str,
                     threads: int, min_run_time: float) -> Callable[[], float]:
    """A function timing the exported network of `arch` with a standard tool, in ms per call."""
    from nas.export import export_onnx, export_python, export_torchscript

    shape = plan(space, arch).input_shape
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    # The file is written now; the model is loaded for each timing and dropped after it: 50 frozen
    # TorchScript networks held at once ran this 24 GB machine out of memory.
    if backend == "torch":
        return exported_file_referee(export_python(space, arch, folder / f"{name}.py"), x, threads, min_run_time)
    if backend == "torchscript":
        path = str(export_torchscript(space, arch, folder / f"{name}.pt"))
        return lambda: _timer_ms(torch.jit.freeze(torch.jit.load(path).eval()), x, threads, min_run_time)
    if backend == "onnxruntime":
        path = str(export_onnx(space, arch, folder / f"{name}.onnx"))
        return lambda: _ort_loop(path, x, threads, min_run_time)
    raise SystemExit(f"no referee for backend {backend!r}")


def _ort_loop(path: str, x: torch.Tensor, threads: int, min_run_time: float) -> float:
    """A plain `InferenceSession.run` loop on a default session (but the thread count) of the file at `path`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return _plain_loop(session, {session.get_inputs()[0].name: x.numpy()}, min_run_time)()


# ---- timings beside the probe ---------------------------------------------------------------------
def beside_probe(model: LatencyModel, fn: Callable[[], float]) -> tuple[float, float]:
    """`fn()`'s timing and the network probe's reading beside it (geometric mean of one right before
    and one right after), so the timing can be put at the table's level like our own figures."""
    before = model.network_probe_ms()
    timing = fn()
    return timing, (before * model.network_probe_ms()) ** 0.5


def network_level(model: LatencyModel) -> float:
    """The table's network level (ms); a table without one takes it from the network probe now."""
    if model.table.network_reference is None:
        model.current_speed()
    return model.table.network_reference.ms


def at_level(level_ms: float, timings: Sequence[float], readings: Sequence[float]) -> float:
    """The median of `timings`, each rescaled by the network probe reading beside it to the table's
    network level exactly as our own figures are (`level_factor`)."""
    return float(np.median([t * level_factor(level_ms, r, NETWORK_PROBE_BAND) for t, r in zip(timings, readings)]))


def referee_figures(model: LatencyModel, summary: Mapping[str, Any], referee: Callable[[], float],
                    passes: int) -> dict[str, Any]:
    """A search's winner (`summary`: the run's summary.json) against the referee's timing of it, in
    `passes` passes each beside the network probe: the prediction, the winner check's figures, the
    referee as timed and at the table's level, the errors between them and the share of the target
    used. Prints one line."""
    best, target = summary["best"], summary["target_latency_ms"]
    speed = summary.get("machine_speed_at_start") or 1.0
    level = network_level(model)
    timings, beside = zip(*(beside_probe(model, referee) for _ in range(passes)))
    raw = float(np.median(timings))
    level_ms = at_level(level, timings, beside)
    row = {"target_ms": target, "trial": best["number"],
           "speed_at_start": summary.get("machine_speed_at_start"), "check_level_ms": best.get("measured_level_ms"),
           "predicted_ms": best["predicted_latency_ms"], "margin": summary.get("latency_margin"),
           "check_ms": best.get("measured_latency_ms"), "check_raw_ms": best.get("measured_raw_ms"),
           "check_meets": best.get("meets_target"), "winner_note": summary.get("winner_note"),
           "referee_ms": raw, "referee_level_ms": level_ms, "referee_timings_ms": list(timings),
           "speed_during_referee": float(np.median(beside)) / level,
           # Both at the table's level: the prediction without the search's speed factor, the referee
           # rescaled by the network probe beside it; what the search meant by the target is
           # target / speed at start at the level, so "used" there is referee_level x speed / target.
           "predicted_level_ms": best["predicted_latency_ms"] / speed,
           "error_at_level": best["predicted_latency_ms"] / speed / level_ms - 1,
           "used_at_search_speed": level_ms * speed / target,
           "error_vs_referee_level": best["predicted_latency_ms"] / level_ms - 1,
           "error_vs_referee_raw": best["predicted_latency_ms"] / raw - 1,
           # The prediction at the machine's speed during the winner check (what the CLI prints beside it).
           "predicted_at_check_ms": best.get("predicted_at_check_ms"),
           "error_at_check_vs_referee_raw": best["predicted_at_check_ms"] / raw - 1
           if best.get("predicted_at_check_ms") else None,
           "used_level": level_ms / target, "used_raw": raw / target,
           "entries": len(model.table), "correction": model.table.correction.to_dict()
           if model.table.correction else None}
    check = "not measured" if row["check_ms"] is None else \
        f"{row['check_ms']:.2f} ms ({'meets' if row['check_meets'] else 'MISSES'})"
    print(f"target {target:g} ms: trial {row['trial']} predicted {row['predicted_ms']:.2f} ms (machine "
          f"{speed:.2f}x the level), check {check}; referee {raw:.2f} ms as timed "
          f"({row['error_vs_referee_raw']:+.1%} off the prediction, uses {row['used_raw']:.0%} of the target; "
          f"machine {row['speed_during_referee']:.2f}x the level), {level_ms:.2f} ms at the level "
          f"({row['error_at_level']:+.1%} off the prediction at the level, uses {row['used_at_search_speed']:.0%} "
          f"of the target at the search's speed)", flush=True)
    if row["predicted_at_check_ms"]:
        print(f"  predicted at the check's speed {row['predicted_at_check_ms']:.2f} ms: "
              f"{row['error_at_check_vs_referee_raw']:+.1%} off the referee as timed", flush=True)
    return row


# ---- tables ---------------------------------------------------------------------------------------
def made_up_table(space_file: str, threads: int = 1, path: Path | None = None) -> LatencyTable:
    """Every unit of the space with an arbitrary entry: enough to time lookups or run a search's
    whole path, useless for latency."""
    rng = random.Random(0)
    profile = current_profile("torch", threads=threads, batch_size=1)
    entries = {text: Entry(ms=rng.uniform(0.01, 2.0), spread_ms=0.0, runs=1, rounds=1)
               for text in unique_units(load_space(space_file))}
    return LatencyTable(profile, entries, path=path)


def lookup_model(p: argparse.ArgumentParser, args: argparse.Namespace, space: SearchSpace) -> LatencyModel | None:
    """The table of --lut, never measured into; under --quick without --lut a made-up one covering the
    space. None (after saying why) when the table lacks units of the space."""
    if not args.lut and not args.quick:
        p.error("the following arguments are required: --lut")
    lut = args.lut
    if not lut:
        lut = Path(tempfile.mkdtemp(prefix="nas-bench-lut-")) / "made-up.json"
        made_up_table(args.space, args.threads, lut).save()
    latency = api.latency_model("torch", args.threads, 1, lut, measure_missing=False)
    missing = latency.missing(space, list(unique_units(space).values()))
    if missing:
        print(f"{lut}: {len(missing)} units of {args.space} have no entry; build the table first", file=sys.stderr)
        return None
    return latency
