"""One architecture's latency figures (`nas arch stats`): per-unit entries, the prediction, and
optionally the whole network measured end to end; the table is saved whatever happens."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nas.latency.model import LatencyModel, Prediction
from nas.space import SearchSpace, plan


@dataclass(frozen=True)
class ArchLatency:
    """Latency of one architecture on the table's profile; the measured fields are None unless asked for."""

    profile: str  # the table's profile id
    unit_ms: list[float]  # each unit's entry, in the plan's order
    predicted: Prediction
    sum_ms: float  # plain sum of the entries
    corrected: bool  # whether the table has a correction
    measured_ms: float | None = None  # end to end, at the table's speed level (3 passes)
    measured_raw_ms: float | None = None  # the same, as timed now
    machine_speed: float | None = None  # this session against the table's level (> 1: slower now)
    measured_pass_cv: float | None = None  # spread of the end-to-end figure between its passes
    busy_unit_groups: dict[str, Any] | None = None  # units a busy machine slowed while filled (`settle_disturbed`)


def arch_latency(model: LatencyModel, space: SearchSpace, arch: Mapping[str, Any] | None = None, *,
                 measure: bool = False) -> ArchLatency:
    """Predict `arch` (measuring its missing units first) and, with `measure`, time it end to end."""
    units = plan(space, arch or {}).units
    try:
        model.fill(space, list(units))
        measured = {}
        if measure:
            (ms,) = model.measure_networks(space, [arch or {}], passes=3)
            measured = {"measured_ms": ms, "measured_raw_ms": model.last_raw[0], "machine_speed": model.last_speed,
                        "measured_pass_cv": model.last_pass_spread[0]}
        # Units a busy machine kept slow through every try are timed once more (after the network's
        # timing, when there is one, so a passing load has had time to go) before predicting from them.
        busy = model.settle_disturbed(space)
        unit_ms = [model.unit_ms(unit, space) for unit in units]
        out = ArchLatency(profile=model.profile.id, unit_ms=unit_ms, predicted=model.predict(space, arch),
                          sum_ms=model.sum_ms(space, arch), corrected=model.table.correction is not None,
                          busy_unit_groups=busy, **measured)
    finally:
        model.table.save()
    return out
