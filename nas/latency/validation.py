"""Prediction against end-to-end measurement on random networks: agreement, worst cases, residuals."""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Iterable

import numpy as np

from nas.latency.build import Bars, Say, no_bars
from nas.latency.fit import agreement
from nas.latency.model import LatencyModel
from nas.space import SearchSpace, encode, sample

# A network figure that moves more than this between passes is too coarse for a ±10% check; more
# passes steady it: 7 passes moved 0.026-0.033 (|log|) between repeats of 8 networks on a contended
# host, against 0.042-0.047 for the default 3 (benchmarks/network_repeatability.py).
NOISY_PASS_CV = 0.05
STEADY_PASSES = 7


def noisy_machine_advice(measurement_cv: float | None, passes: int) -> str | None:
    """One line for a validation whose figures moved more than NOISY_PASS_CV between passes (None if not)."""
    if measurement_cv is None or measurement_cv <= NOISY_PASS_CV or passes >= STEADY_PASSES:
        return None
    return (f"each network's figure moved {measurement_cv:.1%} between passes (the machine is noisy): "
            f"--passes {STEADY_PASSES} steadies it, at about {STEADY_PASSES / passes:.1f}x the measuring time")


def validate(model: LatencyModel, space: SearchSpace, n: int, seed: int = 0, passes: int = 3,
             progress: Callable[[Iterable], Iterable] | None = None, worst: int = 5) -> dict[str, Any]:
    """Predict and measure `n` random networks end to end; agreement figures and the worst cases.

    The headline figures compare with measurements at the table's speed level (each group rescaled
    by the network probe timed beside it, see `measure_networks`); `raw` gives the same figures
    against the medians as timed, `speed` how the machine's speed compared with the level (> 1:
    slower now) and `drift_cv` how much the network probe moved between groups. With a correction and at
    least 10 networks, its residual figures are replaced by these out-of-sample ones.
    """
    rng = random.Random(seed)
    archs = [sample(space, rng) for _ in range(n)]
    predicted = [model.predict_ms(space, arch) for arch in archs]
    measured = model.measure_networks(space, archs, passes, progress)
    # Units a busy machine slowed while they were filled (by the fit or the predictions above) are
    # timed again now, minutes later, and the predictions made again from them.
    busy = model.settle_disturbed(space)
    if busy["units"]:
        predicted = [model.predict_ms(space, arch) for arch in archs]
    rows = [{"arch": encode(space, a), "predicted_ms": p, "measured_ms": m, "measured_raw_ms": r, "error": p / m - 1}
            for a, p, m, r in zip(archs, predicted, measured, model.last_raw)]
    c = model.table.correction
    residuals = np.asarray(measured) / np.asarray(predicted) - 1
    if c is not None and n >= 10:
        c = model.table.correction = dataclasses.replace(
            c, residual_mean=float(np.mean(residuals)), residual_sd=float(np.std(residuals, ddof=1)), residual_n=n)
    cv = float(np.median(model.last_pass_spread)) if passes > 1 else None
    return {
        "n": n,
        "profile": model.profile.id,
        **agreement(predicted, measured),
        "raw": agreement(predicted, model.last_raw),
        "passes": passes,
        # How much one network's end-to-end figure moved between passes: the noise floor of the
        # measurement itself, which no table can beat.
        "measurement_cv": cv,
        "advice": noisy_machine_advice(cv, passes),
        "busy_unit_groups": busy,
        "drift_cv": model.last_drift_cv,
        "speed": model.last_speed,
        "correction": None if c is None else c.to_dict(),
        "level_ms": model.table.reference.ms if model.table.reference is not None else None,
        "network_level_ms": model.table.network_reference.ms if model.table.network_reference is not None else None,
        "worst": sorted(rows, key=lambda r: -abs(r["error"]))[:worst],
        "rows": rows,
    }


def validate_table(model: LatencyModel, space: SearchSpace, samples: int, *, seed: int = 0, fit: int = 20,
                   refit: bool = False, passes: int = 3, say: Say | None = None,
                   bars: Bars | None = None) -> dict[str, Any]:
    """`nas lut validate`: fit a correction on `fit` networks first if the table has none (or `refit`),
    then `validate` on `samples` others; the table is saved whatever happens. `say` hears a fit's
    symptom, `bars(desc, unit)` may wrap the loops in progress bars."""
    bar = bars or no_bars
    try:
        if (model.table.correction is None or refit) and fit > 0:
            model.fit_correction(space, n=fit, passes=passes, progress=bar("fitting correction", "run"),
                                 unit_progress=bar("measuring units", "unit"))
            if model.last_fit_note and say is not None:
                say(f"warning: {model.last_fit_note}")
        return validate(model, space, samples, seed=seed, passes=passes, progress=bar("validating", "run"))
    finally:
        model.table.save()
