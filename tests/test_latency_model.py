"""nas.latency logic with a scripted measurer: exact sums, fits and figures, no timing noise."""
from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest

import nas.latency as latency
from nas.latency import (LatencyModel, MissingEntryError, choose_correction, default_table_path, fit_archs,
                         open_table, validate)
from nas.space import load_space, plan, sample, unique_units
from proxies.latency import Measurement, current_profile

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


@pytest.fixture
def space(write_yaml):
    return load_space(write_yaml(TINY))


class FakeNetwork:
    """Stands in for a built network: the scripted measurer reads its arch."""

    def __init__(self, arch):
        self.arch = arch


def fake_networks(monkeypatch) -> None:
    """LatencyModel.network builds nothing: it hands the scripted measurer a FakeNetwork."""
    monkeypatch.setattr(LatencyModel, "network", lambda self, sp, arch=None: (FakeNetwork(arch), None))


def units_sum(space, arch) -> float:
    return sum(fake_unit_ms(u.key.input_shape) for u in plan(space, arch).units)


@pytest.fixture
def scripted(monkeypatch, space):
    """measure_modules returns exact figures: units by input shape, networks as 0.8*sum + 0.05*units + 1.5."""

    def truth(arch):
        return 0.8 * units_sum(space, arch) + 0.05 * len(plan(space, arch).units) + 1.5

    def measure(items, profile, **_):
        out = []
        for module, input_shape in items:
            ms = truth(module.arch) if isinstance(module, FakeNetwork) else fake_unit_ms(input_shape)
            out.append(Measurement(median_ms=ms, spread_ms=ms / 20, runs=10, rounds=1, discarded=0))
        return out

    monkeypatch.setattr(latency, "measure_modules", measure)
    fake_networks(monkeypatch)
    return truth


@pytest.fixture
def model(tmp_path):
    return LatencyModel(open_table(current_profile("torch", threads=1), tmp_path / "t.json"))


def test_default_table_path_follows_env(tmp_path, monkeypatch) -> None:
    profile = current_profile("torch", threads=1)
    monkeypatch.setenv("NAS_LUT_DIR", str(tmp_path / "luts"))
    assert default_table_path(profile) == tmp_path / "luts" / f"{profile.id}.json"
    monkeypatch.delenv("NAS_LUT_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_table_path(profile) == tmp_path / "xdg" / "mobile-nas" / "latency" / f"{profile.id}.json"


def test_fill_measures_each_unit_once_and_sums(scripted, space, model) -> None:
    units = list(unique_units(space).values())
    assert model.fill(space, units) == len(units)
    assert model.fill(space, units) == 0  # nothing left to measure
    assert len(model.table) == len(units)
    model.table.save()
    saved = json.loads(model.table.path.read_text())
    assert len(saved["entries"]) == len(units)
    assert not os.path.exists(f"{model.table.path}.journal")
    arch = sample(space, 3)
    expected = sum(fake_unit_ms(u.key.input_shape) for u in plan(space, arch).units)
    assert model.sum_ms(space, arch) == pytest.approx(expected)
    assert model.predict_ms(space, arch) == pytest.approx(expected)  # no correction yet


def test_fill_passes_keep_the_median(monkeypatch, space, model) -> None:
    values = itertools.cycle([3.0, 1.0, 2.0])

    def measure(items, profile, **_):
        return [Measurement(median_ms=next(values), spread_ms=0.1, runs=10, rounds=1, discarded=0) for _ in items]

    monkeypatch.setattr(latency, "measure_modules", measure)
    unit = next(iter(unique_units(space).values()))
    model.fill(space, [unit], passes=3)
    entry = model.table.get(unit.text)
    assert (entry.ms, entry.runs, entry.rounds) == (2.0, 30, 3)


def test_missing_entry_is_an_error_when_measuring_is_off(space, model) -> None:
    frozen = LatencyModel(model.table, measure_missing=False)
    unit = plan(space, sample(space, 0)).units[0]
    with pytest.raises(MissingEntryError) as info:
        frozen.sum_ms(space, sample(space, 0))
    assert str(info.value) == (f"{model.table.path}: no latency for unit '{unit.text}' (space tiny); "
                               f"run `nas lut build --space {space.file}`")


def test_fit_recovers_the_correction_exactly(scripted, space, model) -> None:
    c = model.fit_correction(space, n=10, passes=1)
    assert (c.scale, c.per_unit_ms, c.offset_ms) == pytest.approx((0.8, 0.05, 1.5), abs=1e-9)
    assert c.mape == pytest.approx(0, abs=1e-9) and c.n == 10
    arch = sample(space, 11)
    assert model.predict_ms(space, arch) == pytest.approx(scripted(arch))


def test_validate_reports_agreement(scripted, space, model) -> None:
    model.fit_correction(space, n=10, passes=1)
    report = validate(model, space, n=20, seed=0, passes=2)
    assert report["n"] == 20 and report["passes"] == 2
    assert report["within_10pct"] == 1.0
    assert report["mape"] == pytest.approx(0, abs=1e-9)
    assert report["spearman"] == pytest.approx(1.0) and report["kendall"] == pytest.approx(1.0)
    assert len(report["worst"]) == 5 and len(report["rows"]) == 20


def test_validate_without_correction_sees_the_bias(scripted, space, model) -> None:
    report = validate(model, space, n=20, seed=0, passes=1)
    # The plain sum misses the 0.8 scale and the per-unit and fixed overheads (which dominate these
    # tiny networks): every network is far off, and the per-unit term even reorders some.
    assert report["within_10pct"] == 0.0
    assert report["mape"] > 0.5
    assert report["spearman"] < 0.99


def test_fit_networks_are_distinct_and_seeded(space) -> None:
    fitted = fit_archs(space, 10, seed=0)
    assert len(set(fitted)) == 10
    assert fitted == fit_archs(space, 10, seed=0)  # deterministic
    assert fitted != fit_archs(space, 10, seed=1)


def test_choose_correction_prefers_the_simplest_model_that_predicts() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    sums = rng.uniform(10, 30, 12)
    counts = rng.integers(15, 30, 12).astype(float)
    # The truth is the plain sum; 10% noise must not buy a wild three-term fit.
    noisy = sums * rng.normal(1, 0.1, 12)
    scale, per_unit, offset = choose_correction(sums, counts, noisy)
    assert per_unit == 0.0 and 0.7 < scale <= 1.3
    # An exact affine truth is recovered exactly.
    exact = 0.9 * sums + 2.0
    assert choose_correction(sums, counts, exact) == pytest.approx((0.9, 0.0, 2.0))


def test_validate_reports_the_noise_floor(scripted, space, model) -> None:
    report = validate(model, space, n=5, seed=0, passes=2)
    assert report["measurement_cv"] == 0.0  # the scripted measurer never varies
    assert validate(model, space, n=5, seed=0, passes=1)["measurement_cv"] is None


def test_reference_network_cancels_a_group_wide_slowdown(monkeypatch, space, model) -> None:
    """Each group runs at its own speed (a drifting machine); the reference timed in the same
    rotation moves with it, so the rescaled figures are exact while the raw ones are not."""
    speeds = itertools.cycle([1.0, 1.3, 0.8, 1.1])

    def measure(items, profile, **_):
        speed = next(speeds)
        return [Measurement(median_ms=units_sum(space, m.arch) * speed, spread_ms=0.0, runs=10, rounds=1,
                            discarded=0) for m, _ in items]

    monkeypatch.setattr(latency, "measure_modules", measure)
    fake_networks(monkeypatch)
    archs = [sample(space, i) for i in range(20)]
    ref = latency.reference_arch(space)
    expected = [units_sum(space, a) for a in archs]
    scaled = model.measure_networks(space, archs, passes=3, reference=ref)
    # One common factor (the reference's median speed over all groups) for every network ...
    factors = np.array(scaled) / expected
    assert np.ptp(factors) == pytest.approx(0, abs=1e-12) and 0.8 <= factors[0] <= 1.3
    # ... while the raw medians carry each network's own share of slow and fast groups.
    assert np.ptp(np.array(model.last_raw) / expected) > 0.05
    assert model.last_drift_cv > 0.1
    assert model.measure_networks(space, archs, passes=3) == model.last_raw  # no reference: raw medians


def test_fit_records_the_reference_speed_and_validation_uses_it(monkeypatch, space, model) -> None:
    """A machine 20% slower while validating than while fitting: validation expressed at the fit's
    reference speed still agrees exactly, and the raw figures show the slowdown."""
    speed = {"now": 1.0}

    def measure(items, profile, **_):
        def ms(m, shape):
            return units_sum(space, m.arch) if isinstance(m, FakeNetwork) else fake_unit_ms(shape)

        return [Measurement(median_ms=ms(m, shape) * speed["now"], spread_ms=0.0, runs=10, rounds=1, discarded=0)
                for m, shape in items]

    monkeypatch.setattr(latency, "measure_modules", measure)
    fake_networks(monkeypatch)
    model.fill(space, list(unique_units(space).values()))  # the whole table at the fit's speed
    c = model.fit_correction(space, n=8, passes=1)
    assert c.reference_ms == pytest.approx(units_sum(space, latency.reference_arch(space)))
    speed["now"] = 1.2
    report = validate(model, space, n=10, passes=2)
    assert report["within_10pct"] == 1.0 and report["mape"] == pytest.approx(0, abs=1e-9)
    assert report["raw"]["mape"] == pytest.approx(1 - 1 / 1.2)
    assert report["reference_ms"] == c.reference_ms
