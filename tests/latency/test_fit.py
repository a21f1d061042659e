"""`nas.latency.fit` on numbers alone: which networks a correction is fitted on, which model it
chooses, and when a correction is a symptom."""
from __future__ import annotations

import pytest

import nas.latency as latency
from nas.latency import choose_correction, fit_archs
from nas.space import plan, sample


def test_fit_networks_cover_the_fewest_and_most_blocks() -> None:
    """A search under a latency bound picks few, wide blocks: the fit must see the space's depth range."""
    from nas.space import canonical, load_space

    sandglass = load_space("search_spaces/sandglass.yaml")

    def units(pick=None):
        arch = dict(sample(sandglass, 3))
        arch.update({f"{s.name}.depth": pick(s.depth) for s in sandglass.stages if len(s.depth) > 1 and pick})
        return len(plan(sandglass, canonical(sandglass, arch)).units)

    counts = [len(plan(sandglass, a).units) for a in fit_archs(sandglass, 12, seed=0)]
    fewest, most = units(min), units(max)
    assert counts.count(fewest) == 4 and counts.count(most) == 4
    assert all(fewest <= c <= most for c in counts)


def test_choose_correction_prefers_the_simplest_model_that_predicts() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    sums = rng.uniform(10, 30, 12)
    counts = rng.integers(15, 30, 12).astype(float)
    # The truth is the plain sum; 10% noise must not buy a wild three-term fit.
    noisy = sums * rng.normal(1, 0.1, 12)
    scale, per_unit, offset, loo = choose_correction(sums, counts, noisy)
    assert per_unit == 0.0 and 0.7 < scale <= 1.3
    assert len(loo) == 12 and 0.03 < np.std(loo) < 0.2  # leave-one-out residuals carry the 10% noise
    # An exact affine truth is recovered exactly, with no residual.
    exact = 0.9 * sums + 2.0
    *coefficients, loo = choose_correction(sums, counts, exact)
    assert coefficients == pytest.approx((0.9, 0.0, 2.0)) and np.abs(loo).max() < 1e-9


def test_a_correction_near_the_plain_sum_is_no_symptom() -> None:
    from proxies.latency import Correction

    near = Correction(scale=1.04, offset_ms=0.3, per_unit_ms=0.0, n=20, mape=0.03)
    assert latency.symptom(near, typical_ms=20.0) is None
    assert latency.symptom(Correction(scale=0.6, offset_ms=15.0, n=20, mape=0.03), typical_ms=20.0) is not None


def test_a_scale_the_backend_explains_is_no_symptom() -> None:
    # ONNX Runtime, mobilenet_v3.yaml, 2 threads: units timed with sleeping threads, networks with
    # spinning ones fitted 0.524 x sum + 0.04 ms; the probe ran 0.58x as fast deployed.
    from proxies.latency import Correction

    ort = Correction(scale=0.524, offset_ms=0.04, per_unit_ms=0.0, n=20, mape=0.039)
    assert latency.symptom(ort, typical_ms=2.6, typical_units=21).startswith(
        "the correction is far from the plain sum (scale 0.524, offset +0.04 ms")
    assert latency.symptom(ort, typical_ms=2.6, typical_units=21, expected_scale=0.58) is None
    far = Correction(scale=0.3, offset_ms=0.04, per_unit_ms=0.0, n=20, mape=0.039)
    assert latency.symptom(far, typical_ms=2.6, typical_units=21, expected_scale=0.58).startswith(
        "the correction is far from the plain sum (scale 0.300, 0.58 expected on this backend, offset +0.04 ms, "
        "+0.000 ms per unit: -47% on a ~2.6 ms network)")


def test_few_networks_cannot_buy_a_fit_that_extrapolates_wildly() -> None:
    """Four networks: a three-term model fits any three of them exactly and may predict the fourth at a
    fraction of its time. Each leave-one-out fit needs two networks per coefficient, so four networks
    get the plain sum or an offset, and eight can have the three-term model."""
    import numpy as np

    sums = np.array([10.0, 12.0, 14.0, 30.0])
    counts = np.array([20.0, 16.0, 25.0, 17.0])
    measured = np.array([11.0, 11.5, 17.0, 29.0])
    scale, per_unit, offset, loo = choose_correction(sums, counts, measured)
    assert (scale, per_unit) == (1.0, 0.0) and np.abs(loo).max() < 0.3
    rng = np.random.default_rng(1)
    sums8, counts8 = rng.uniform(10, 30, 8), rng.integers(15, 30, 8).astype(float)
    scale, per_unit, offset, loo = choose_correction(sums8, counts8, 0.8 * sums8 + 0.3 * counts8 + 1.0)
    assert (scale, per_unit, offset) == pytest.approx((0.8, 0.3, 1.0))


def test_the_default_margin_is_capped_and_says_why() -> None:
    from nas.latency.fit import DEFAULT_MARGIN, MAX_MARGIN, margin_note
    from proxies.latency import Correction

    def correction(mean, sd, n=20):
        return Correction(scale=1.0, offset_ms=0.0, n=n, mape=0.05, residual_mean=mean, residual_sd=sd, residual_n=n)

    assert latency.margin(correction(0.02, 0.05)) == pytest.approx(0.02 + 1.645 * 0.05)
    assert margin_note(correction(0.02, 0.05)) is None and margin_note(None) is None
    assert latency.margin(None) == DEFAULT_MARGIN
    wild = correction(49.0, 1.02, n=4)
    assert latency.margin(wild) == MAX_MARGIN
    assert margin_note(wild).startswith("the table's predictions missed unseen networks by up to +5068% (residuals "
                                        "on 4: mean +4900.0%, sd 102.0%), so the default margin is capped at 50%")


def test_the_winner_checks_measurements_rescale_a_stale_correction() -> None:
    """Four make runs from an empty cache measured their front 8.5-15.6% over the table's prediction: the
    median measured / predicted rescales every coefficient, counted as that many more networks; a check
    within the probe's noise (5%) confirms the correction, and fewer than 4 points decide nothing."""
    from proxies.latency import Correction

    c = Correction(scale=0.93, offset_ms=-1.9, per_unit_ms=0.21, n=12, mape=0.03, residual_mean=0.004,
                   residual_sd=0.058, residual_n=12)
    new = latency.recalibrated(c, [1.18, 1.13, 1.29, 1.14, 1.19, 0.96])
    factor = 1.16  # the median of the six
    assert (new.scale, new.per_unit_ms, new.offset_ms) == pytest.approx((0.93 * factor, 0.21 * factor, -1.9 * factor))
    assert new.n == 18 and (new.residual_sd, new.residual_n) == (c.residual_sd, c.residual_n)
    assert latency.recalibrated(c, [1.04, 0.97, 1.03, 1.05, 1.0]) is None  # within 5%: confirmed
    assert latency.recalibrated(c, [1.3, 1.3, 1.3]) is None  # three points are too few to move a table
    assert latency.recalibrated(c, [0.8, 0.85, float("nan"), 0.9, 0.82]).scale == pytest.approx(0.93 * 0.835)
