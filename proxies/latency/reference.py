"""The probe: one fixed module timed before and after every group, so figures from different moments agree.

Why: this machine's speed is not one number. A fixed module timed back to back reads 0.75 ms
for a minute, then 1.4 ms, then 2.2 ms (other tenants of the host; measured with this probe over
single processes of a few seconds). A table filled over many sessions, or networks timed minutes
after their units, would otherwise mix speeds. Timing the probe right before and right after a
group and dividing by its time when the table's level was set expresses every figure at that one
speed. The probe is space-independent (a table is shared by every space of one device profile),
seeded, and about the size of a middle unit; 30 back-to-back calls give a reading with ~2% noise.
"""

from __future__ import annotations

import torch
from torch import nn

from proxies.latency.backends import SPINNING_BACKENDS, Runner, pinned_threads, prepare
from proxies.latency.harness import measure
from proxies.latency.profile import DeviceProfile

__all__ = ["NETWORK_PROBE_BAND", "NETWORK_PROBE_MEASURE", "NETWORK_PROBE_SHAPE", "PROBE_BAND", "PROBE_MEASURE",
           "PROBE_SHAPE", "Probe", "deployed_ratio", "level_factor", "network_probe_module", "probe_module"]

#: (C, H, W) of the probe's input: a MobileNetV2 block at 28x28, 32 channels, expansion 6.
PROBE_SHAPE = (32, 28, 28)
_HIDDEN = 192
_SEED = 0
PROBE_MEASURE = {"warmup": 3, "min_runs": 30, "min_time_s": 0.0, "max_rounds": 1}
# A reading this close to the level is the probe's own noise, not a different machine: over 90 s of
# a calm machine its readings moved 3% (CV) while a network's did not follow them (correlation
# 0.0-0.45), so rescaling by them would only add their noise. Beyond the band the machine is in
# another state (readings of 1.4x and 2.2x the quiet one were common) and figures are rescaled.
PROBE_BAND = 0.08

# The network probe: a whole small network, timed as networks are (alone, as deployed). The block
# probe above misses what slows networks most on this 2-core VM: with a busy process on one core,
# 2-thread networks ran 7-50x slower while the block probe read 1.0-1.6x (its convolutions are small
# enough to run mostly on one thread), and a network-sized module slowed by the same order. Networks
# (the correction's fit, validation, `arch stats --measure`, the winner check) and a search's reading
# of the machine's speed therefore use this one; units keep the block probe, which is their size.
NETWORK_PROBE_SHAPE = (3, 224, 224)
NETWORK_PROBE_MEASURE = {"warmup": 2, "min_runs": 12, "min_time_s": 0.0, "max_rounds": 1}
NETWORK_PROBE_BAND = 0.05


def level_factor(level_ms: float, reading_ms: float, band: float = PROBE_BAND) -> float:
    """What a figure timed beside a probe reading of `reading_ms` is multiplied by to express it at the
    table's level: 1 within the band (the probe's noise), level / reading beyond it."""
    if not (level_ms > 0 and reading_ms > 0):
        raise ValueError(f"probe times must be positive, got level {level_ms!r} and reading {reading_ms!r}")
    ratio = level_ms / reading_ms
    return 1.0 if abs(ratio - 1) <= band else ratio


def probe_module() -> nn.Module:
    """A fresh, seeded inverted-residual block in eval mode (the same weights every call)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        block = nn.Sequential(
            nn.Conv2d(PROBE_SHAPE[0], _HIDDEN, 1, bias=False), nn.BatchNorm2d(_HIDDEN), nn.ReLU6(),
            nn.Conv2d(_HIDDEN, _HIDDEN, 3, padding=1, groups=_HIDDEN, bias=False), nn.BatchNorm2d(_HIDDEN),
            nn.ReLU6(),
            nn.Conv2d(_HIDDEN, PROBE_SHAPE[0], 1, bias=False), nn.BatchNorm2d(PROBE_SHAPE[0]),
        )
    return block.eval()


def _inverted_residual(c: int, hidden: int, stride: int) -> nn.Module:
    out = c if stride == 1 else 2 * c
    return nn.Sequential(
        nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
        nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out))


def network_probe_module() -> nn.Module:
    """A fresh, seeded MobileNetV2-like network in eval mode (stem, six inverted residuals from 112 to
    7 px, head, classifier): ~12 ms at 2 threads on this machine, the size of a small searched network."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        stages = [(16, 96, 2), (32, 192, 1), (32, 192, 2), (64, 384, 1), (64, 384, 2), (128, 768, 1), (128, 768, 2)]
        net = nn.Sequential(
            nn.Conv2d(NETWORK_PROBE_SHAPE[0], 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            *(_inverted_residual(c, h, s) for c, h, s in stages),
            nn.Conv2d(256, 1024, 1, bias=False), nn.BatchNorm2d(1024), nn.ReLU6(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))
    return net.eval()


class Probe:
    """A probe prepared once for one profile; `time_ms()` is one reading of the machine's speed. The
    block probe (default) is timed as table units are; `network=True` gives the network probe, timed
    alone as deployed, as networks are."""

    def __init__(self, profile: DeviceProfile, network: bool = False) -> None:
        self.profile = profile
        self.network = network
        self._runner: Runner | None = None

    def time_ms(self) -> float:
        """Median of the probe's warm back-to-back calls (PROBE_MEASURE or NETWORK_PROBE_MEASURE), in ms."""
        with pinned_threads(self.profile.threads):
            if self._runner is None:
                module, shape = (network_probe_module(), NETWORK_PROBE_SHAPE) if self.network else \
                    (probe_module(), PROBE_SHAPE)
                self._runner = prepare(module, shape, self.profile, copy=False, as_deployed=self.network)
            options = NETWORK_PROBE_MEASURE if self.network else PROBE_MEASURE
            return measure(self._runner.run, sync=self._runner.sync, **options).median_ms


def deployed_ratio(profile: DeviceProfile, pairs: int = 3) -> float:
    """How much faster the probe runs as deployed than as a table unit is timed, on `profile`: 1 where
    the two are timed alike; for ONNX Runtime (idle threads spin when deployed, sleep in a table's
    rotation) the median of `pairs` alternating readings each way, about 0.55-0.65 at 2 threads on
    this 2-core machine (whole networks: 0.65). A correction near this scale is expected, not a symptom."""
    if profile.backend not in SPINNING_BACKENDS:
        return 1.0
    with pinned_threads(profile.threads):
        deployed = prepare(probe_module(), PROBE_SHAPE, profile, copy=False, as_deployed=True)
        rotation = prepare(probe_module(), PROBE_SHAPE, profile, copy=False, as_deployed=False)
        ratios = sorted(measure(deployed.run, **PROBE_MEASURE).median_ms
                        / measure(rotation.run, **PROBE_MEASURE).median_ms for _ in range(pairs))
    return ratios[len(ratios) // 2]
