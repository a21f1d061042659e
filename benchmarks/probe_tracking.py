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

from benchmarks._common import finish, parse, parser
from nas.builder import build
from nas.space import encode, load_space, plan, sample
from proxies.latency import current_profile, measure, prepare
from proxies.latency.reference import Probe

QUICK = {"seconds": 3.0, "networks": 2}
EXPONENTS = (0.0, 0.5, 0.75, 1.0)


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
    runners = [prepare(build(space, a).eval(), plan(space, a).input_shape, profile, copy=False) for a in archs]

    readings, timings = [], []
    start = time.monotonic()
    while time.monotonic() - start < args.seconds or len(readings) < 3:
        before = probe.time_ms()
        timings.append([measure(r.run, warmup=1, min_runs=10, min_time_s=0.05, max_rounds=1).median_ms
                        for r in runners])
        readings.append((before * probe.time_ms()) ** 0.5)  # geometric mean of the readings around them
    probe_ms, nets = np.array(readings), np.array(timings)

    rows = []
    for j, arch in enumerate(archs):
        x, y = np.log(probe_ms), np.log(nets[:, j])
        rows.append({"arch": encode(space, arch), "median_ms": float(np.exp(np.median(y))),
                     "slope": float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else None,
                     "correlation": float(np.corrcoef(x, y)[0, 1]) if np.ptp(x) > 0 and np.ptp(y) > 0 else None,
                     "log_sd": {str(e): log_sd_after_rescaling(probe_ms, nets[:, j], e) for e in EXPONENTS}})
    figures = {"space": args.space, "backend": args.backend, "threads": args.threads, "rounds": len(readings),
               "probe_ms_range": [float(probe_ms.min()), float(probe_ms.max())], "networks": rows}

    print(f"{len(readings)} rounds; network probe {probe_ms.min():.2f}-{probe_ms.max():.2f} ms "
          f"({probe_ms.max() / probe_ms.min():.2f}x)")
    print("network            slope  corr   log-sd after rescaling by probe^" + "/".join(f"{e:g}" for e in EXPONENTS))
    for r in rows:
        slope = "   -" if r["slope"] is None else f"{r['slope']:5.2f}"
        corr = "   -" if r["correlation"] is None else f"{r['correlation']:5.2f}"
        print(f"  {r['median_ms']:8.2f} ms      {slope}  {corr}   "
              + " ".join(f"{r['log_sd'][str(e)]:.3f}" for e in EXPONENTS))
    return finish(args, figures)


if __name__ == "__main__":
    sys.exit(main())
