"""What several command groups share: the device-profile options, the latency table they select,
progress bars and lines for stderr. Self-contained: argparse in, nas.latency called lazily."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Iterable

__all__ = ["add_profile_options", "bars", "latency_model", "progress", "say"]


def add_profile_options(p: argparse.ArgumentParser, *, lut: bool = True) -> None:
    """--backend/--threads/--batch-size select the device profile; --lut picks the table file."""
    p.add_argument("--backend", default="torch", help="torch, torchscript, onnxruntime or cuda (default torch)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help=f"intra-op threads (default: all {os.cpu_count()} cores)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    if lut:
        p.add_argument("--lut", metavar="FILE", help="latency table file (default: one per profile in "
                       "$NAS_LUT_DIR or ~/.cache/mobile-nas/latency)")


def progress(enabled: bool, desc: str, unit: str) -> Any:
    """A tqdm wrapper for loops, or None when quiet."""
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)


def bars(quiet: bool) -> Callable[[str, str], Callable[[Iterable], Iterable] | None]:
    """`progress` as the (description, unit) -> wrapper callback that nas.latency's builds take."""
    return lambda desc, unit: progress(not quiet, desc, unit)


def say(line: str) -> None:
    """A line for the person at the terminal: stderr, so stdout stays the command's result."""
    print(line, file=sys.stderr)


def latency_model(args: argparse.Namespace, *, path: str | None = None, measure_missing: bool = True) -> Any:
    """The table for the profile the options describe (`nas.latency.model_for`)."""
    from nas.latency import model_for

    return model_for(args.backend, args.threads, args.batch_size, path or getattr(args, "lut", None) or None,
                     measure_missing)


def busy_note(busy: dict[str, Any], after: str) -> str | None:
    """One line on the groups of units a busy machine slowed (`busy_unit_groups` of a search summary or a
    validation report), or None when there were none; `after` says when they were timed again."""
    if not busy.get("groups"):
        return None
    again = f"timed again after {after}" if busy["retimed"] else "not timed again (the run was interrupted)"
    still = (f"{busy['still_slow']} slow: their entries are rescaled by the units timed beside them, typically "
             f"~20% off under load" if busy["still_slow"] else "all now at the usual speed")
    return (f"{busy['groups']} group(s) of units ({busy['units']} units) were timed while the machine ran over "
            f"{busy['tolerance']:.0%} slower than usual or than when the table was timed (another busy process?); "
            f"{again}, {still}")
