"""Groups of units put at the table's level by anchors (units already in the table, timed in the same
rotation), on a scripted machine where the units' speed and the block probe's reading are set apart:
under load they part, and the probe alone then filled entries 2x, once 20x, off."""
from __future__ import annotations

import pytest

import nas.latency.timing as timing
from latency_helpers import PROBE_MS, fake_unit_ms
from nas.latency import LatencyModel, open_table
from nas.latency.anchors import ANCHOR_BAND, ANCHORS, MIN_ANCHORS, AnchorPool, anchor_ratio
from nas.space import unique_units
from proxies.latency import Entry, Measurement, current_profile

SLOWED = "over 30% slower than usual or than when the table was timed (another busy process?)"  # as the CLI says it


class SplitMachine:
    """Units run at `units` x their speed; the block probe reads `probe` x its own. Each timed group's
    items are kept, and `group_speeds` (if set) scripts the units' speed group by group."""

    def __init__(self, monkeypatch) -> None:
        self.units, self.probe, self.group_speeds, self.groups, self.pauses = 1.0, 1.0, None, [], []
        monkeypatch.setattr(LatencyModel, "probe_ms", lambda model: PROBE_MS * self.probe)
        monkeypatch.setattr(LatencyModel, "network_probe_ms", lambda model: PROBE_MS * self.probe)
        monkeypatch.setattr(timing, "measure_modules", self.measure)
        monkeypatch.setattr(timing.time, "sleep", self.pauses.append)

    def load_until_retimed(self, monkeypatch, speed: float = 3.0) -> None:
        """Units run `speed` x slower from now until `retime_disturbed` starts: a load that has gone by the
        time a search's trials (or a validation's networks, or an arch's fill) end."""
        self.units = speed
        retime = LatencyModel.retime_disturbed

        def load_gone(model, space):
            self.units = 1.0
            return retime(model, space)

        monkeypatch.setattr(LatencyModel, "retime_disturbed", load_gone)

    def measure(self, items, profile, **_):
        if self.group_speeds is not None:
            self.units = next(self.group_speeds)
        self.groups.append(len(items))
        return [Measurement(median_ms=fake_unit_ms(shape) * self.units, spread_ms=0.0, runs=10, rounds=1, discarded=0)
                for _, shape in items]


@pytest.fixture
def machine(monkeypatch):
    return SplitMachine(monkeypatch)


@pytest.fixture
def halves(space):
    """The tiny space's units in two halves: the first to fill a table, the second to measure later."""
    units = list(unique_units(space).values())
    return units[: len(units) // 2], units[len(units) // 2:]


def exact(model, units) -> bool:
    return all(model.table.entries[u.text].ms == pytest.approx(fake_unit_ms(u.key.input_shape)) for u in units)


@pytest.mark.parametrize("probe", [20.0, 0.5])
def test_a_probe_that_misreads_the_machine_no_longer_scales_the_entries(machine, space, model, halves, probe) -> None:
    """The lazy-fill fault: units at their usual speed while the probe reads 20x (or 0.5x). Beside
    anchors the new entries are exact; beside the probe alone (re-timing) they come out 20x too small."""
    first, later = halves
    model.fill(space, first)
    machine.probe = probe
    model.measure_units(space, later[:3])
    assert exact(model, later[:3]) and machine.groups[-1] == 3 + ANCHORS
    model.measure_units(space, later[3:5], anchored=False)
    assert all(model.table.entries[u.text].ms == pytest.approx(fake_unit_ms(u.key.input_shape) / probe)
               for u in later[3:5])


def test_units_slowed_by_a_load_the_probe_misses_are_put_at_the_level(machine, space, model, halves) -> None:
    """A load slows the units 2.5x for good while the probe reads steady: every try reads 2.5x, so the
    group is timed GROUP_TRIES times with growing pauses, kept rescaled, and counted as disturbed."""
    first, later = halves
    model.fill(space, first)
    machine.units = 2.5
    model.measure_units(space, later[:4])
    assert exact(model, later[:4])
    assert model.retimed_groups == timing.GROUP_TRIES - 1 and model.disturbed_groups == 1
    assert machine.pauses == [timing.RETRY_PAUSE_S * k for k in range(1, timing.GROUP_TRIES)]
    assert model.anchor_ratios[-1] == pytest.approx(2.5)


def test_a_passing_load_is_waited_out(machine, space, model, halves) -> None:
    first, later = halves
    model.fill(space, first)
    machine.group_speeds = iter([3.0, 1.0])
    model.measure_units(space, later[:4])
    assert exact(model, later[:4]) and model.retimed_groups == 1 and model.disturbed_groups == 0
    assert machine.pauses == [timing.RETRY_PAUSE_S] and model.anchor_ratios[-1] == 1.0


@pytest.mark.parametrize("speed, slow", [(1.4, True), (1.2, False)])
def test_a_machine_that_stays_slower_becomes_the_usual_speed(machine, space, model, halves, speed, slow) -> None:
    """A load that lasts: once most of the session's groups ran 1.4x, a group at 1.4x is timed once (no
    pauses) and still lands at the level; its units are kept for `retime_disturbed` all the same, being
    over BUSY_TOLERANCE slower than the level. 1.2x is drift within it: nothing to time again."""
    first, later = halves
    model.fill(space, first)
    machine.units = speed
    for unit in later[:3]:
        model.measure_units(space, [unit])
    pauses = len(machine.pauses)
    model.measure_units(space, [later[3]])
    assert len(machine.pauses) == pauses and exact(model, later[:4])
    assert set(model.disturbed_units) == ({u.text for u in later[:4]} if slow else set())


def test_a_faster_machine_than_usual_is_kept_at_once(machine, space, model, halves) -> None:
    """Faster than the session's usual speed is a calmer moment (a load that slowed the table's first
    groups has gone): timed once, and put at the level."""
    first, later = halves
    model.fill(space, first)
    machine.units = 0.6
    model.measure_units(space, later[:2])
    assert machine.pauses == [] and model.disturbed_groups == 0 and exact(model, later[:2])


def test_within_the_anchors_noise_a_group_is_kept_as_timed(machine, space, model, halves) -> None:
    first, later = halves
    model.fill(space, first)
    machine.units = 1 + ANCHOR_BAND / 2
    unit = later[0]
    assert model.measure_units(space, [unit])[0].ms == pytest.approx(fake_unit_ms(unit.key.input_shape) * machine.units)


def test_a_new_table_starts_with_the_probe(machine, space, model, halves) -> None:
    """No entries, no anchors: the first group is timed alone between two probe readings."""
    first, _ = halves
    model.measure_units(space, first[:2])
    assert machine.groups == [2] and len(model.probe_readings) == 1 and model.anchor_ratios == []
    model.measure_units(space, first[2:3])  # two units in the table: fewer than MIN_ANCHORS
    assert machine.groups[-1] == 1 and MIN_ANCHORS > 2


def test_a_later_session_anchors_on_the_tables_entries(machine, space, tmp_path, halves) -> None:
    """A new model on a table filled in an earlier session finds anchors among the units of the space's
    seeded architectures that the table has."""
    first, later = halves
    path = tmp_path / "t.json"
    earlier = LatencyModel(open_table(current_profile("torch", threads=1), path))
    earlier.fill(space, list(unique_units(space).values()))
    earlier.table.save()
    model = LatencyModel(open_table(current_profile("torch", threads=1), path))
    del model.table.entries[later[0].text]
    machine.probe = 20.0  # would put the unit 20x low
    model.measure_units(space, [later[0]])
    assert machine.groups[-1] == 1 + ANCHORS and exact(model, [later[0]])


def test_the_pool_draws_known_units_other_than_the_groups_own(space, model, halves) -> None:
    first, _ = halves
    pool = AnchorPool(model.table)
    assert pool.draw(space) == []  # an empty table: nothing to anchor on
    for unit in first:
        model.table.add(unit.text, Entry(ms=1.0, spread_ms=0.0, runs=1, rounds=1))
    pool.add(first)
    own = [u.text for u in first[:2]]
    for _ in range(20):
        drawn = pool.draw(space, exclude=own)
        assert len(drawn) == min(ANCHORS, len(first) - 2) and len({u.text for u in drawn}) == len(drawn)
        assert not {u.text for u in drawn} & set(own) and all(u.text in model.table for u in drawn)


def test_anchor_ratio_is_the_median_of_time_over_entry() -> None:
    assert anchor_ratio([2.0, 3.0, 40.0], [1.0, 1.0, 1.0]) == 3.0
    assert anchor_ratio([1.0, 2.0], [2.0, 2.0]) == pytest.approx(0.75)



def test_units_kept_slow_are_timed_again_once_the_load_has_passed(machine, space, model, halves) -> None:
    first, later = halves
    model.fill(space, first)
    machine.group_speeds = iter([3.0] * timing.GROUP_TRIES + [1.0] * 10)
    model.measure_units(space, later[:3])
    assert model.disturbed_groups == 1 and set(model.disturbed_units) == {u.text for u in later[:3]}
    drawn = {u.text for _ in range(30) for u in model.anchors.draw(space)}
    assert drawn and not drawn & set(model.disturbed_units)  # a slowed group anchors no other
    assert model.retime_disturbed(space) == (3, 0)
    assert model.disturbed_units == {} and exact(model, later[:3]) and model.anchor_ratios[-1] == 1.0


def test_a_search_times_again_what_a_busy_machine_kept_slow_and_says_so(machine, space, model, halves, tmp_path,
                                                                         monkeypatch, capsys) -> None:
    """A load slows every unit 3x through a search's trials (the table half filled on a calm machine) and
    has passed when they end: the first group that ran slow is timed again after the trials, the summary
    counts it and the command line says it in one line."""
    from types import SimpleNamespace

    from nas import api
    from nas.cli.search import _print_outcome

    model.fill(space, halves[0])
    machine.load_until_retimed(monkeypatch)
    result = api.search(space, "50ms", n_trials=12, seed=0, run_dir=tmp_path / "run", latency=model, measure=False,
                        fit=0)
    busy = result.summary["busy_unit_groups"]
    assert busy["groups"] >= 1 and busy["units"] >= 1 and busy["retimed"] and busy["still_slow"] == 0
    assert exact(model, [u for u in unique_units(space).values() if u.text in model.table])
    _print_outcome(SimpleNamespace(stats=SimpleNamespace(new=12, total=12), summary=result.summary, interrupted=False,
                                   elapsed_s=1.0, run_dir="run"))
    assert (f"note: {busy['groups']} group(s) of units ({busy['units']} units) were timed while the machine ran "
            f"{SLOWED}; timed again after the trials, all now at the usual speed") in capsys.readouterr().out


def test_validation_times_again_what_a_busy_machine_slowed_and_predicts_again(monkeypatch, machine, space, model,
                                                                               halves, capsys) -> None:
    """`nas lut validate` on a half-filled table while a load slows units 3x: the predictions fill the rest
    lazily; the load has gone by the time the networks are measured, so the slowed units are timed again
    then and the networks predicted again from them: exact agreement, and the report says so."""
    from latency_helpers import FakeNetwork, fake_networks, units_sum
    from nas.latency import validate

    fake_networks(monkeypatch)
    unit_measure = machine.measure

    def measure(items, profile, **options):
        if isinstance(items[0][0], FakeNetwork):
            machine.units = 1.0  # the load has passed
            return [Measurement(median_ms=units_sum(space, m.arch), spread_ms=0.0, runs=10, rounds=1, discarded=0)
                    for m, _ in items]
        return unit_measure(items, profile, **options)

    monkeypatch.setattr(timing, "measure_modules", measure)
    model.fill(space, halves[0])
    machine.units = 3.0
    report = validate(model, space, n=6, passes=1)
    busy = report["busy_unit_groups"]
    assert busy["groups"] >= 1 and busy["units"] >= 1 and busy["still_slow"] == 0
    assert report["within_10pct"] == 1.0 and report["mape"] == pytest.approx(0, abs=1e-9)
    from nas.cli.lut import _print_validation

    _print_validation(space.name, report, None)
    assert (f"note           {busy['groups']} group(s) of units ({busy['units']} units) were timed while the "
            f"machine ran {SLOWED}; timed again after the networks, all now at the usual speed"
            ) in capsys.readouterr().out


def test_arch_stats_times_again_what_a_busy_machine_slowed(monkeypatch, machine, space, model, halves,
                                                          capsys) -> None:
    """`nas arch stats` on a half-filled table while a load slows units 3x: the network's missing units
    are filled slowed; the load has gone when they are timed once more, so the prediction is made
    from exact entries and the command says so in one line."""
    import random

    from nas.cli.arch import _latency_fields, _print_latency
    from nas.latency import arch_latency
    from nas.space import plan, sample

    model.fill(space, halves[0])
    filled = set(model.table.entries)
    rng = random.Random(0)
    arch = next(a for a in (sample(space, rng) for _ in range(200))
                if len({u.text for u in plan(space, a).units} - filled) >= 2)
    machine.load_until_retimed(monkeypatch)
    stats = arch_latency(model, space, arch)
    busy = stats.busy_unit_groups
    assert busy["groups"] >= 1 and busy["units"] >= 1 and busy["retimed"] and busy["still_slow"] == 0
    units = plan(space, arch).units
    assert exact(model, units)
    assert stats.unit_ms == [pytest.approx(fake_unit_ms(u.key.input_shape)) for u in units]
    _print_latency(_latency_fields(stats, [{} for _ in units], measured=False))
    assert (f"note: {busy['groups']} group(s) of units ({busy['units']} units) were timed while the machine ran "
            f"{SLOWED}; timed again after the fill, all now at the usual speed") in capsys.readouterr().out
