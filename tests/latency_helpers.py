"""A tiny space, a scripted measurer's pieces and a scripted machine for nas.latency tests: exact
figures, no timing noise (fixtures built on them are in tests/latency/conftest.py)."""
from __future__ import annotations

import nas.latency.timing as timing
from nas.latency import LatencyModel
from nas.space import plan
from proxies.latency import Measurement

PROBE_MS = 0.5  # the scripted probe's reading at speed 1

TINY = """
name: tiny
resolution: [32, 40]
num_classes: 10
stem: {out: 8}
stages:
  - {stride: 2, depth: [1, 2, 3], width: [16, 24], block: {op: inverted_residual, kernel: [3, 5], expand: [2, 4]}}
  - {stride: 2, depth: [1, 2], width: 32, block: {op: sandglass, expand: [2, 6]}}
head: {pool: avg}
"""


def fake_unit_ms(shape: tuple[int, ...]) -> float:
    """A deterministic 'latency' from the input shape alone."""
    c, h, w = shape
    return 0.01 + c * h * w * 1e-5



class FakeNetwork:
    """Stands in for a built network: the scripted measurer reads its arch."""

    def __init__(self, arch):
        self.arch = arch


def fake_networks(monkeypatch) -> None:
    """LatencyModel.network builds nothing: it hands the scripted measurer a FakeNetwork."""
    monkeypatch.setattr(LatencyModel, "network", lambda self, sp, arch=None: (FakeNetwork(arch), None))


def units_sum(space, arch) -> float:
    return sum(fake_unit_ms(u.key.input_shape) for u in plan(space, arch).units)


class Machine:
    """A scripted machine whose speed multiplies units, networks and the probe alike. Each group's
    first probe reading (the one before it) moves to the next speed of `speeds`, unless `readings`
    scripts every probe reading's speed one by one."""

    def __init__(self, monkeypatch, space, speeds=None, readings=None) -> None:
        self.space, self.speeds, self.readings = space, speeds, readings
        self.speed, self.calls, self.groups = 1.0, 0, 0
        monkeypatch.setattr(LatencyModel, "probe_ms", lambda model: self.probe_ms())
        monkeypatch.setattr(LatencyModel, "network_probe_ms", lambda model: self.probe_ms())
        monkeypatch.setattr(timing, "measure_modules", self.measure)

    def probe_ms(self) -> float:
        if self.readings is not None:
            self.speed = next(self.readings)
        elif self.calls % 2 == 0:
            self.speed = next(self.speeds)
        self.calls += 1
        return PROBE_MS * self.speed

    def measure(self, items, profile, **_):
        self.groups += 1

        def ms(m, shape):
            return units_sum(self.space, m.arch) if isinstance(m, FakeNetwork) else fake_unit_ms(shape)

        return [Measurement(median_ms=ms(m, shape) * self.speed, spread_ms=0.0, runs=10, rounds=1, discarded=0)
                for m, shape in items]
