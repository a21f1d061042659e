"""Latency targets as people write them: `20ms`, `20 ms`, `1.5ms`, `500us`, `0.02s`."""
from __future__ import annotations

import math
import re

from nas.errors import NasError

_UNITS_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1000.0}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)?\s*$")


class TargetError(NasError, ValueError):
    """A latency target that cannot be read or is not positive."""


def parse_latency(text: str | float) -> float:
    """Milliseconds from a latency with an optional unit (ms when none is given)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), "ms"
    else:
        match = _PATTERN.match(str(text).lower())
        if not match:
            raise TargetError(f"--target-latency: cannot read {text!r}; write a positive number with a unit "
                              f"ms, us or s (e.g. 20ms, 1.5ms, 500us, 0.02s)")
        value, unit = float(match.group(1)), match.group(2) or "ms"
    ms = value * _UNITS_MS[unit]
    if not math.isfinite(ms) or ms <= 0:
        raise TargetError(f"--target-latency: {text!r} is not a positive latency")
    return ms


def format_latency(ms: float) -> str:
    """A short label for names and titles: 20ms, 1.5ms, 500us."""
    if ms < 1:
        return f"{ms * 1000:g}us"
    return f"{ms:g}ms"
