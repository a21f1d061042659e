"""Figures at the table's speed level, on a scripted machine: the probe around every group, the two levels,
groups timed again while the machine changed speed, and the machine's speed a search reads."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import nas.latency as latency
import nas.latency.timing as timing
from latency_helpers import PROBE_MS, Machine, fake_networks, fake_unit_ms, units_sum
from nas.latency import LatencyModel, validate
from nas.space import plan, sample, unique_units
from proxies.latency import Entry

pytestmark = pytest.mark.usefixtures("steady_probe")


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
