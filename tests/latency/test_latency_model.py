"""nas.latency logic with a scripted measurer: exact sums, fits and figures, no timing noise."""
from __future__ import annotations

from types import SimpleNamespace

import itertools
import json
import os

import numpy as np
import pytest

import nas.latency as latency
import nas.latency.timing as timing
from nas.latency import (LatencyModel, MissingEntryError, default_table_path, fit_archs,
                         open_table, validate)
from nas.space import load_space, plan, sample, unique_units
from proxies.latency import Entry, Measurement, current_profile

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


@pytest.fixture(autouse=True)
def steady_probe(monkeypatch):
    """Both probes read the same every time unless a test scripts a machine (no real timing in these tests)."""
    monkeypatch.setattr(LatencyModel, "probe_ms", lambda self: PROBE_MS)
    monkeypatch.setattr(LatencyModel, "network_probe_ms", lambda self: PROBE_MS)


@pytest.fixture
def model(tmp_path):
    return LatencyModel(open_table(current_profile("torch", threads=1), tmp_path / "t.json"))


def test_default_table_path_follows_env(tmp_path, monkeypatch) -> None:
    profile = current_profile("torch", threads=1)
    monkeypatch.setenv("NAS_LUT_DIR", str(tmp_path / "luts"))
    assert default_table_path(profile) == tmp_path / "luts" / f"{profile.id}-v2.json"
    monkeypatch.delenv("NAS_LUT_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_table_path(profile) == tmp_path / "xdg" / "mobile-nas" / "latency" / f"{profile.id}-v2.json"


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

    monkeypatch.setattr(timing, "measure_modules", measure)
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
    assert (c.residual_mean, c.residual_sd, c.residual_n) == pytest.approx((0, 0, 10), abs=1e-9)
    # A scale of 0.8 and an offset of 1.5 ms on networks of a few ms is no per-call overhead: said in one
    # line. The fit networks' units were timed again and reproduced (the scripted figures do not change),
    # so the note says the gap is the machine's rather than advising a rebuild that would find the same.
    assert model.last_fit_note.startswith("the correction is far from the plain sum (scale 0.800, offset +1.50 ms")
    assert model.last_fit_note.endswith("re-timing the fit networks' units reproduced their sums (median change "
                                        "0%), so this is how networks run on this machine now, not a timing slip: "
                                        "the correction keeps it; `nas lut validate` checks it")
    assert "rebuild" not in model.last_fit_note
    arch = sample(space, 11)
    assert model.predict_ms(space, arch) == pytest.approx(scripted(arch))


def test_validate_reports_agreement(scripted, space, model) -> None:
    model.fit_correction(space, n=10, passes=1)
    report = validate(model, space, n=20, seed=0, passes=2)
    assert report["n"] == 20 and report["passes"] == 2
    assert report["within_10pct"] == 1.0
    assert report["mape"] == pytest.approx(0, abs=1e-9)
    # Networks of equal scripted latency tie; their order is left to the last bit of rounding.
    assert report["spearman"] == pytest.approx(1.0, abs=0.01) and report["kendall"] == pytest.approx(1.0, abs=0.02)
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


def test_deployed_ratio_is_one_unless_the_backend_spins(monkeypatch) -> None:
    import proxies.latency.reference as reference

    def no_timing(*args, **kwargs):
        raise AssertionError("a backend timed alike both ways needs no timing")

    monkeypatch.setattr(reference, "prepare", no_timing)
    assert reference.deployed_ratio(current_profile("torch", threads=1)) == 1.0
    assert reference.deployed_ratio(current_profile("torchscript", threads=1)) == 1.0
    # ONNX Runtime: the median of alternating readings, deployed over rotation-style.
    made = []
    monkeypatch.setattr(reference, "prepare", lambda *a, as_deployed, **k: made.append(as_deployed) or
                        SimpleNamespace(run=None))
    readings = iter([0.6, 1.0, 0.5, 1.0, 0.9, 1.2])  # ratios 0.6, 0.5, 0.75
    monkeypatch.setattr(reference, "measure", lambda run, **k: Measurement(
        median_ms=next(readings), spread_ms=0.0, runs=30, rounds=1, discarded=0))
    assert reference.deployed_ratio(current_profile("onnxruntime", threads=1)) == pytest.approx(0.6)
    assert made == [True, False]


def test_a_symptom_whose_units_time_differently_again_advises_a_rebuild(monkeypatch, space, model) -> None:
    """Units first timed 3x slow (a slip), re-timed 2x slow, networks at the plain sum: the re-timed sums
    moved 33%, the fit is still far from the sum, and the note advises a rebuild."""
    slip = {"units": 3.0}

    def measure(items, profile, **_):
        return [Measurement(median_ms=units_sum(space, m.arch) if isinstance(m, FakeNetwork)
                            else fake_unit_ms(shape) * slip["units"], spread_ms=0.0, runs=10, rounds=1, discarded=0)
                for m, shape in items]

    monkeypatch.setattr(timing, "measure_modules", measure)
    fake_networks(monkeypatch)
    model.fill(space, list(unique_units(space).values()))
    slip["units"] = 2.0
    model.fit_correction(space, n=8, passes=1)
    assert model.last_fit_note.endswith("rebuild the table (`nas lut build --refit`) (after re-timing the fit "
                                        "networks' units)")
    assert model.table.correction.scale == pytest.approx(0.5)  # fitted on the re-timed entries


def test_validate_reports_the_noise_floor(scripted, space, model) -> None:
    report = validate(model, space, n=5, seed=0, passes=2)
    assert report["measurement_cv"] == 0.0  # the scripted measurer never varies
    assert validate(model, space, n=5, seed=0, passes=1)["measurement_cv"] is None
    assert report["advice"] is None


def test_a_noisy_validation_advises_more_passes() -> None:
    """Figures moving more than NOISY_PASS_CV between passes get one line naming the cure and its cost;
    steady figures, a single pass (no spread known) and enough passes already get none."""
    from nas.latency.validation import NOISY_PASS_CV, STEADY_PASSES, noisy_machine_advice

    assert noisy_machine_advice(0.08, 3) == ("each network's figure moved 8.0% between passes (the machine is "
                                             f"noisy): --passes {STEADY_PASSES} steadies it, at about 2.3x the "
                                             "measuring time")
    assert noisy_machine_advice(NOISY_PASS_CV, 3) is None and noisy_machine_advice(None, 1) is None
    assert noisy_machine_advice(0.08, STEADY_PASSES) is None


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


def test_probe_cancels_a_group_wide_slowdown(monkeypatch, space, model) -> None:
    """Each group runs at its own speed (a drifting machine); the probe timed in the same rotation
    moves with it, so figures at the table's level are exact while the raw ones are not."""
    Machine(monkeypatch, space, speeds=itertools.cycle([1.0, 1.3, 0.8, 1.1]))
    fake_networks(monkeypatch)
    model.table.network_reference = Entry(ms=PROBE_MS * 2.0, spread_ms=0.0, runs=10, rounds=1)  # all off the band
    archs = [sample(space, i) for i in range(20)]
    expected = [units_sum(space, a) for a in archs]
    scaled = model.measure_networks(space, archs, passes=3)
    assert np.array(scaled) / expected == pytest.approx(np.full(20, 2.0))  # at the table's level, exactly
    # ... while the raw medians carry each network's own share of slow and fast groups.
    assert np.ptp(np.array(model.last_raw) / expected) > 0.05
    assert model.last_drift_cv > 0.1 and 0.8 <= model.last_speed * 2.0 <= 1.3


def test_units_timed_in_a_later_session_join_the_table_at_its_level(monkeypatch, space, model) -> None:
    """Half the units measured on a quiet machine, the rest (lazily, later) 50% slower: every entry
    still reads as on the quiet machine, and the first probe time set the level."""
    speed = {"now": 1.0}
    Machine(monkeypatch, space, speeds=iter(lambda: speed["now"], None))
    units = list(unique_units(space).values())
    model.fill(space, units[: len(units) // 2])
    assert model.table.reference.ms == pytest.approx(PROBE_MS)
    speed["now"] = 1.5
    arch = sample(space, 3)
    assert model.predict_ms(space, arch) == pytest.approx(units_sum(space, arch))  # missing units measured
    assert all(model.table.entries[u.text].ms == pytest.approx(fake_unit_ms(u.key.input_shape))
               for u in units if u.text in model.table)


def test_both_levels_name_one_moment_so_the_correction_carries_no_change_of_machine(monkeypatch, space, model) -> None:
    """Units timed on a quiet machine, the correction's networks later at 1.5x: the network level was set
    with the block level, at the first group, so the networks are rescaled to it and the correction
    predicts the scripted plain sum. (Read only when the first network was timed, the network level
    would be the slow machine's, and the correction 1.5 x sum.)"""
    speed = {"now": 1.0}
    Machine(monkeypatch, space, speeds=iter(lambda: speed["now"], None))
    fake_networks(monkeypatch)
    model.fill(space, list(unique_units(space).values()))
    assert model.table.network_reference.ms == model.table.reference.ms == PROBE_MS
    speed["now"] = 1.5
    model.fit_correction(space, n=8, passes=1)
    arch = sample(space, 11)
    assert model.predict_ms(space, arch) == pytest.approx(units_sum(space, arch))


@pytest.mark.parametrize("kept", ["block", "network"])
@pytest.mark.parametrize("speed, expected", [(2.0, 1.0), (1.03, 1.03)])
def test_a_table_with_one_level_gets_the_other_at_that_levels_state(monkeypatch, space, model, kept, speed,
                                                                    expected) -> None:
    """A table written before the two levels were set together has one of them. The other is read now
    and expressed at the kept level's state: at 2x (both probes slower) it is halved; 3% off is within
    the probes' noise, and kept as read."""
    level = Entry(ms=PROBE_MS, spread_ms=0.0, runs=2, rounds=1)
    (model.table.set_reference if kept == "block" else model.table.set_network_reference)(level)
    Machine(monkeypatch, space, readings=itertools.repeat(speed))
    model.ensure_levels()
    assert model.table.reference.ms == pytest.approx(PROBE_MS * (1.0 if kept == "block" else expected))
    assert model.table.network_reference.ms == pytest.approx(PROBE_MS * (1.0 if kept == "network" else expected))


def test_validation_is_expressed_at_the_table_level_and_reports_the_speed(monkeypatch, space, model) -> None:
    """A machine 20% slower while validating than when the table was timed: validation at the table's
    level still agrees exactly, the raw figures show the slowdown, and `speed` names it."""
    speed = {"now": 1.0}
    Machine(monkeypatch, space, speeds=iter(lambda: speed["now"], None))
    fake_networks(monkeypatch)
    model.fill(space, list(unique_units(space).values()))
    model.fit_correction(space, n=8, passes=1)
    speed["now"] = 1.2
    report = validate(model, space, n=10, passes=2)
    assert report["within_10pct"] == 1.0 and report["mape"] == pytest.approx(0, abs=1e-9)
    assert report["raw"]["mape"] == pytest.approx(1 - 1 / 1.2)
    assert report["speed"] == pytest.approx(1.2) and report["level_ms"] == model.table.reference.ms
    assert report["correction"]["residual_n"] == 10 and report["correction"]["residual_sd"] == pytest.approx(0)


def test_a_group_timed_while_the_machine_changed_speed_is_timed_again(monkeypatch, space, model) -> None:
    # Probe readings: both levels (1.0), then before 1.0, after 1.6 (changed mid-group: re-timed), then 1.0 and 1.0.
    machine = Machine(monkeypatch, space, readings=iter([1.0] * 2 * timing.LEVEL_READINGS + [1.0, 1.6, 1.0, 1.0]))
    unit = plan(space, sample(space, 0)).units[0]
    model.measure_units(space, [unit])
    assert machine.groups == 2 and model.retimed_groups == 1 and model.probe_readings == [PROBE_MS]
    # A machine that never settles: GROUP_TRIES attempts, then the geometric mean of the last two readings.
    machine = Machine(monkeypatch, space, readings=itertools.cycle([1.0, 2.0]))
    model.measure_units(space, [plan(space, sample(space, 1)).units[-1]])
    assert machine.groups == latency.GROUP_TRIES and model.probe_readings[-1] == pytest.approx(PROBE_MS * 2 ** 0.5)
    # With one try (benchmarks/network_repeatability.py compares it), the group is kept as first timed.
    model.group_tries, retimed = 1, model.retimed_groups
    machine = Machine(monkeypatch, space, readings=itertools.cycle([1.0, 2.0]))
    model.measure_units(space, [plan(space, sample(space, 2)).units[-1]])
    assert machine.groups == 1 and model.retimed_groups == retimed


def test_current_speed_reads_the_network_probe_against_the_network_level(monkeypatch, space, model) -> None:
    Machine(monkeypatch, space, readings=iter([1.0] * (2 * timing.LEVEL_READINGS + 5) + [1.5] * 5 + [1.04] * 5))
    assert model.current_speed() == 1.0  # a new table: both levels set first, from the same readings
    assert model.table.network_reference.ms == model.table.reference.ms == PROBE_MS
    assert model.current_speed() == pytest.approx(1.25)  # the session's median: 5 readings at 1.0, 5 at 1.5
    assert model.current_speed() == 1.0  # 15 readings, median 1.04: within the network probe's noise


def test_units_read_the_block_probe_and_networks_the_network_probe(monkeypatch, space, model, scripted) -> None:
    """Each kind of figure is rescaled by its own probe against its own level: a slow block probe
    (units' state) leaves network figures alone, and a slow network probe leaves unit entries alone."""
    readings = {"block": PROBE_MS, "network": PROBE_MS}
    monkeypatch.setattr(LatencyModel, "probe_ms", lambda self: readings["block"])
    monkeypatch.setattr(LatencyModel, "network_probe_ms", lambda self: readings["network"])
    arch = sample(space, 5)
    unit = plan(space, arch).units[0]
    model.measure_units(space, [unit])
    model.measure_networks(space, [arch], passes=1)
    assert model.table.reference.ms == model.table.network_reference.ms == PROBE_MS
    readings["block"] = 2 * PROBE_MS
    assert model.measure_networks(space, [arch], passes=1)[0] == pytest.approx(scripted(arch))
    assert model.measure_units(space, [unit])[0].ms == pytest.approx(fake_unit_ms(unit.key.input_shape) / 2)
    readings["block"], readings["network"] = PROBE_MS, 2 * PROBE_MS
    assert model.measure_networks(space, [arch], passes=1)[0] == pytest.approx(scripted(arch) / 2)
    assert model.measure_units(space, [unit])[0].ms == pytest.approx(fake_unit_ms(unit.key.input_shape))


def test_figures_within_the_probes_noise_are_kept_as_timed(monkeypatch, space, model) -> None:
    from proxies.latency.reference import PROBE_BAND, level_factor

    assert level_factor(1.0, 1.0 + PROBE_BAND / 2) == 1.0 and level_factor(1.0, 2.0) == 0.5
    Machine(monkeypatch, space, speeds=iter([1.0] * timing.LEVEL_READINGS + [1.0, 1.05, 1.5]))
    fake_networks(monkeypatch)
    arch = sample(space, 2)
    level, near, far = (model.measure_networks(space, [arch], passes=1)[0] for _ in range(3))
    assert near == pytest.approx(1.05 * level)  # 5% off the level: the probe's noise, kept as timed
    assert far == pytest.approx(level)  # 50% off: another state of the machine, rescaled


def test_prediction_interval_from_entries_and_residuals(scripted, space, model) -> None:
    from proxies.latency import Correction

    arch = sample(space, 4)
    bare = model.predict(space, arch)
    units = plan(space, arch).units
    # Entries only: the standard error of each median, 1.253 * IQR / 1.349 / sqrt(runs), added in quadrature.
    se = sum((0.929 * model.table.entries[u.text].spread_ms) ** 2 / 10 for u in units) ** 0.5
    assert bare.ms == pytest.approx(units_sum(space, arch))
    assert bare.high_ms - bare.ms == pytest.approx(1.645 * se) and bare.residual_n == 0
    model.table.correction = Correction(scale=1.0, offset_ms=0.0, n=20, mape=0.03, residual_mean=0.02,
                                        residual_sd=0.04, residual_n=50)
    wide = model.predict(space, arch)
    rel = ((se / wide.ms) ** 2 + 0.04 ** 2) ** 0.5
    assert (wide.low_ms, wide.high_ms) == pytest.approx((wide.ms * (1.02 - 1.645 * rel), wide.ms * (1.02 + 1.645 * rel)))
    assert wide.residual_n == 50
