"""nas.latency logic with a scripted measurer: exact sums, fits, validation and intervals, no timing noise.
How figures are put at the table's speed level is in test_speed_level.py."""
from __future__ import annotations

from types import SimpleNamespace

import itertools
import json
import os

import pytest

import nas.latency.timing as timing
from latency_helpers import FakeNetwork, fake_networks, fake_unit_ms, units_sum
from nas.latency import LatencyModel, MissingEntryError, default_table_path, fit_archs, validate
from nas.space import plan, sample, unique_units
from proxies.latency import Measurement, current_profile
from proxies.latency.table import VERSION

pytestmark = pytest.mark.usefixtures("steady_probe")


def test_default_table_path_follows_env(tmp_path, monkeypatch) -> None:
    profile = current_profile("torch", threads=1)
    monkeypatch.setenv("NAS_LUT_DIR", str(tmp_path / "luts"))
    assert default_table_path(profile) == tmp_path / "luts" / f"{profile.id}-v{VERSION}.json"
    monkeypatch.delenv("NAS_LUT_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_table_path(profile) == tmp_path / "xdg" / "mobile-nas" / "latency" / f"{profile.id}-v{VERSION}.json"


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


def test_a_progress_wrapper_advances_as_each_batch_is_done() -> None:
    pulled: list[int] = []
    finished: list[bool] = []

    def wrap(items):
        for item in items:
            pulled.append(item)
            yield item
        finished.append(True)

    seen = []
    for batch in timing.batches_done(list(range(7)), 3, wrap):
        seen.append((batch, list(pulled)))  # what the wrapper had reported when the batch's work began
    assert seen == [([0, 1, 2], []), ([3, 4, 5], [0, 1, 2]), ([6], [0, 1, 2, 3, 4, 5])]
    assert pulled == list(range(7)) and finished == [True]
    assert [b for b in timing.batches_done([1, 2], 5)] == [[1, 2]]  # no wrapper


def test_fit_measures_its_missing_units_first_under_their_own_bar(scripted, space, model) -> None:
    """From an empty table (a first search) the fit's minutes go to its networks' units, then to the
    network timings: each loop is handed to its own progress wrapper, the units before the networks."""
    seen: list[tuple[str, object]] = []

    def wrapper(name):
        def wrap(items):
            for item in items:
                seen.append((name, item))
                yield item
        return wrap

    model.fit_correction(space, n=6, passes=2, progress=wrapper("runs"), unit_progress=wrapper("units"))
    units = {u.text for a in fit_archs(space, 6) for u in plan(space, a).units}
    names = [name for name, _ in seen]
    assert sorted(item.text for name, item in seen if name == "units") == sorted(units)  # each once
    assert names.count("runs") == 6 * 2
    assert names.index("runs") > max(i for i, name in enumerate(names) if name == "units")
    seen.clear()
    model.fit_correction(space, n=6, passes=1, progress=wrapper("runs"), unit_progress=wrapper("units"))
    assert [name for name, _ in seen] == ["runs"] * 6  # a refit finds every unit in the table


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
