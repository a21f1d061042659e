"""`nas lut build`: measure every unique unit of a space into its table, fit the correction, save.

Progress is the caller's: `say` hears each line worth telling (the CLI
prints them to stderr) and `bars(desc, unit)` wraps a loop in a progress bar
or returns None; this module prints nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from nas.latency.fit import describe
from nas.latency.model import LatencyModel
from nas.space import SearchSpace, Unit, unique_units
from proxies.latency import Correction

Say = Callable[[str], None]
Bar = Callable[[Iterable], Iterable]
Bars = Callable[[str, str], Bar | None]  # (description, unit name) -> a loop wrapper, or None for no bar


def no_bars(desc: str, unit: str) -> None:
    """The `Bars` used when a caller passes none: no loop is wrapped."""


@dataclass(frozen=True)
class TableBuild:
    """What `build_table` did: the units it found and measured, the table it saved, the fit."""

    space: str  # the space's name
    units: int  # unique units of the space
    kept: int  # units already in the table
    measured: int  # units timed by this call
    path: Path | None  # the saved table
    entries: int  # entries in the saved table
    profile: str  # the table's profile id
    correction: Correction | None  # fitted by this call (None: none asked for, or the table's kept)
    fit_note: str | None  # a symptom the fit found, in one line


def _quiet(_: str) -> None:
    pass


def build_table(model: LatencyModel, space: SearchSpace, *, fit: int = 20, refit: bool = False, passes: int = 1,
                say: Say | None = None, bars: Bars | None = None,
                after_fill: Callable[[list[Unit]], None] | None = None) -> TableBuild:
    """Measure every unit of `space` the table lacks (`passes` sweeps), then fit a correction on `fit`
    networks if the table has none (or `refit`), and save the table.

    `after_fill(units)` runs on all the space's units between measuring and fitting (the API warms
    the per-unit cost counts there, so a search after a build never traces a unit).
    """
    say = say or _quiet
    bar = bars or no_bars
    units = list(unique_units(space).values())
    todo = model.missing(space, units)
    say(f"{space.name}: {len(units)} unique units, {len(units) - len(todo)} already in "
        f"{model.table.path}, measuring {len(todo)} on profile {model.profile.id}")
    model.fill(space, todo, bar("measuring units", "unit"), passes=passes)
    if after_fill is not None:
        after_fill(units)
    correction = None
    if fit > 0 and (model.table.correction is None or refit):
        correction = model.fit_correction(space, n=fit, progress=bar("fitting correction", "run"))
        say(f"correction: {describe(correction)}")
        if model.last_fit_note:
            say(f"warning: {model.last_fit_note}")
    model.table.save()
    return TableBuild(space=space.name, units=len(units), kept=len(units) - len(todo), measured=len(todo),
                      path=model.table.path, entries=len(model.table), profile=model.profile.id,
                      correction=correction, fit_note=model.last_fit_note if correction is not None else None)
