"""Fixtures of the nas.latency tests: the tiny space, a table, a scripted measurer and a steady probe."""
from __future__ import annotations

import pytest

import nas.latency.timing as timing
from latency_helpers import PROBE_MS, TINY, FakeNetwork, fake_networks, fake_unit_ms, units_sum
from nas.latency import LatencyModel, open_table
from nas.space import load_space, plan
from proxies.latency import Measurement, current_profile


@pytest.fixture
def space(write_yaml):
    return load_space(write_yaml(TINY))


@pytest.fixture
def scripted(monkeypatch, space):
    """measure_modules returns exact figures: units by input shape, networks as 0.8*sum + 0.05*units + 1.5."""

    def truth(arch):
        return 0.8 * units_sum(space, arch) + 0.05 * len(plan(space, arch).units) + 1.5

    def measure(items, profile, as_deployed=False, **_):
        out = []
        for module, input_shape in items:
            # Networks are timed as the user runs them; units in rotation, with threads that sleep.
            assert as_deployed == isinstance(module, FakeNetwork)
            ms = truth(module.arch) if isinstance(module, FakeNetwork) else fake_unit_ms(input_shape)
            out.append(Measurement(median_ms=ms, spread_ms=ms / 20, runs=10, rounds=1, discarded=0))
        return out

    monkeypatch.setattr(timing, "measure_modules", measure)
    fake_networks(monkeypatch)
    return truth


@pytest.fixture
def steady_probe(monkeypatch):
    """Both probes read the same every time unless a test scripts a machine (no real timing). Used by the
    modules that ask for it (`pytestmark`), not by every test in this folder."""
    monkeypatch.setattr(LatencyModel, "probe_ms", lambda self: PROBE_MS)
    monkeypatch.setattr(LatencyModel, "network_probe_ms", lambda self: PROBE_MS)


@pytest.fixture
def model(tmp_path):
    return LatencyModel(open_table(current_profile("torch", threads=1), tmp_path / "t.json"))
