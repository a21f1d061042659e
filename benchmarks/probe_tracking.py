"""How far the network probe's reading explains a network's slowdown on this machine, now.

Every figure put "at the table's level" is a timing times the level over the network probe's reading
beside it (`nas.latency.timing`). That assumes a network slows by as much as the probe does. This
benchmark times a few random networks and the probe in alternation (probe, each network, probe) for a
while, then reports per network:

- the slope of log(network time) on log(probe reading) (1: the network follows the probe exactly;
  errors in the probe's reading pull a fitted slope below 1 too);
- the spread (sd of the log) of the network's figure rescaled by the probe with exponent 0 (as timed),
  0.5, 0.75 and 1 (as done): how much of the machine's drift the rescaling removes, and how much of
  each timing's noise is left. That remainder is a floor no prediction can be shown to beat.

Each round also times a "heavy" probe: twelve 1x1 convolutions of 1024 channels at 7x7 px, 12.6M
parameters (50 MB), more than the 32 MiB L3 of this VM, where the network probe's 8 MB fit. A winner of
20M parameters followed it one for one (slope 0.92-1.14) and the network probe by half (0.43-0.62) in
two 3-minute runs on 2026-12-04, as if another tenant's use of memory bandwidth slowed big networks and
not the network probe. Each network's parameters and slope, correlation and spread after full
rescaling by the heavy probe are reported beside the network probe's, to test that across sizes: in
two runs of 6 networks (12-72M parameters) the network probe correlated better with 11 of the 12.

It is informative only while the machine's speed changes during the run; on a quiet machine every
slope is noise and every spread is small.

    python -m benchmarks.probe_tracking --space search_spaces/sandglass.yaml --seconds 150 --json out.json
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np
import torch
from torch import nn

from benchmarks._common import finish, parse, parser
from nas.builder import build
from nas.space import encode, load_space, plan, sample
from proxies.latency import current_profile, measure, prepare
from proxies.latency.reference import Probe

QUICK = {"seconds": 3.0, "networks": 2}
EXPONENTS = (0.0, 0.5, 0.75, 1.0)


HEAVY_CHANNELS, HEAVY_LAYERS, HEAVY_SHAPE = 1024, 12, (1024, 7, 7)


def heavy_probe_module() -> nn.Module:
    """A seeded stack of 1x1 convolutions whose weights (50 MB) do not fit in this VM's L3."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(*[nn.Conv2d(HEAVY_CHANNELS, HEAVY_CHANNELS, 1) for _ in range(HEAVY_LAYERS)]).eval()


def tracking(probe_ms: np.ndarray, network_ms: np.ndarray) -> dict:
    """Slope and correlation of log(network) on log(probe) (None where either never moved)."""
    x, y = np.log(probe_ms), np.log(network_ms)
    return {"slope": float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else None,
            "correlation": float(np.corrcoef(x, y)[0, 1]) if np.ptp(x) > 0 and np.ptp(y) > 0 else None}


def log_sd_after_rescaling(probe_ms: np.ndarray, network_ms: np.ndarray, exponent: float) -> float:
    """sd of log(network x (1 / probe) ** exponent): the spread left after rescaling by the probe."""
    return float(np.std(np.log(network_ms) - exponent * np.log(probe_ms), ddof=1))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, threads=2)
    p.add_argument("--backend", default="torch", choices=["torch", "torchscript", "onnxruntime"])
    p.add_argument("--networks", type=int, default=4, help="random networks of the space timed")
    p.add_argument("--seconds", type=float, default=150.0, help="how long to alternate")
    args = parse(p, QUICK, argv)
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    profile = current_profile(args.backend, threads=args.threads)
    probe = Probe(profile, network=True)
    rng = random.Random(args.seed)
    archs = [sample(space, rng) for _ in range(args.networks)]
    models = [build(space, a).eval() for a in archs]
    runners = [prepare(m, plan(space, a).input_shape, profile, copy=False) for m, a in zip(models, archs)]
    heavy = prepare(heavy_probe_module(), HEAVY_SHAPE, profile, copy=False)
    params = [sum(t.numel() for t in m.parameters()) for m in models]

    readings, heavy_readings, timings = [], [], []
    start = time.monotonic()
    while time.monotonic() - start < args.seconds or len(readings) < 3:
        before = probe.time_ms()
        timings.append([measure(r.run, warmup=1, min_runs=10, min_time_s=0.05, max_rounds=1).median_ms
                        for r in runners])
        heavy_readings.append(measure(heavy.run, warmup=1, min_runs=10, min_time_s=0.05, max_rounds=1).median_ms)
        readings.append((before * probe.time_ms()) ** 0.5)  # geometric mean of the readings around them
    probe_ms, heavy_ms, nets = np.array(readings), np.array(heavy_readings), np.array(timings)

    rows = []
    for j, arch in enumerate(archs):
        rows.append({"arch": encode(space, arch), "params": params[j],
                     "median_ms": float(np.exp(np.median(np.log(nets[:, j])))), **tracking(probe_ms, nets[:, j]),
                     "log_sd": {str(e): log_sd_after_rescaling(probe_ms, nets[:, j], e) for e in EXPONENTS},
                     "heavy": {**tracking(heavy_ms, nets[:, j]),
                               "log_sd_rescaled": log_sd_after_rescaling(heavy_ms, nets[:, j], 1.0)}})
    figures = {"space": args.space, "backend": args.backend, "threads": args.threads, "rounds": len(readings),
               "probe_ms_range": [float(probe_ms.min()), float(probe_ms.max())],
               "heavy_probe_ms_range": [float(heavy_ms.min()), float(heavy_ms.max())], "networks": rows}

    print(f"{len(readings)} rounds; network probe {probe_ms.min():.2f}-{probe_ms.max():.2f} ms "
          f"({probe_ms.max() / probe_ms.min():.2f}x); heavy probe {heavy_ms.min():.2f}-{heavy_ms.max():.2f} ms "
          f"({heavy_ms.max() / heavy_ms.min():.2f}x)")
    print("network   params   slope  corr   log-sd after rescaling by probe^" + "/".join(f"{e:g}" for e in EXPONENTS)
          + "   heavy probe: slope  corr  log-sd rescaled")
    for r in rows:
        h = r["heavy"]
        print(f"  {r['median_ms']:7.2f} ms {r['params'] / 1e6:5.1f}M  {_figure(r['slope'])}  {_figure(r['correlation'])}   "
              + " ".join(f"{r['log_sd'][str(e)]:.3f}" for e in EXPONENTS)
              + f"        {_figure(h['slope'])}  {_figure(h['correlation'])}  {h['log_sd_rescaled']:.3f}")
    return finish(args, figures)


def _figure(value: float | None) -> str:
    return "   -" if value is None else f"{value:5.2f}"


if __name__ == "__main__":
    sys.exit(main())
