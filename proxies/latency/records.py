"""Typed records stored in a latency table, and strict parsing of their JSON form.

Why: a table is read back after days and across machines; every value is
checked on the way in so a damaged or hand-edited file fails with a message
naming the field, instead of feeding a wrong number to the search.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

__all__ = ["Correction", "Entry", "canonical_json", "parse_fields", "strict_json"]


def _number(name: str, value: Any, *, negative_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not finite")
    if value < 0 and not negative_ok:
        raise ValueError(f"{name}: {value!r} is negative")
    return float(value)


def _count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: {value!r} is not an integer")
    if value < least:
        raise ValueError(f"{name}: {value!r} is less than {least}")
    return value


@dataclass(frozen=True)
class Entry:
    """One table entry: median latency in ms, its IQR, timed runs kept and rounds run."""

    ms: float
    spread_ms: float
    runs: int
    rounds: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ms", _number("ms", self.ms))
        object.__setattr__(self, "spread_ms", _number("spread_ms", self.spread_ms))
        _count("runs", self.runs, 1)
        _count("rounds", self.rounds, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, in declaration order."""
        return asdict(self)


@dataclass(frozen=True)
class Correction:
    """Fitted end-to-end correction: predicted = scale * sum + per_unit_ms * units + offset_ms.

    ``per_unit_ms`` is the overhead (or fusion saving, when negative) per unit that a plain
    sum misses; ``n`` networks were used for the fit; ``mape`` is its mean absolute
    percentage error (a fraction). ``residual_mean`` and ``residual_sd`` describe
    measured / predicted - 1 on networks the prediction did not see (leave-one-out on the fit
    networks, replaced by a validation's out-of-sample figures, ``residual_n`` of them): they
    give each prediction its interval and the search its default latency margin.
    """

    scale: float
    offset_ms: float
    n: int
    mape: float
    per_unit_ms: float = 0.0
    residual_mean: float = 0.0
    residual_sd: float = 0.0
    residual_n: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _number("scale", self.scale, negative_ok=True))
        object.__setattr__(self, "offset_ms", _number("offset_ms", self.offset_ms, negative_ok=True))
        object.__setattr__(self, "per_unit_ms", _number("per_unit_ms", self.per_unit_ms, negative_ok=True))
        _count("n", self.n, 0)
        object.__setattr__(self, "mape", _number("mape", self.mape))
        object.__setattr__(self, "residual_mean", _number("residual_mean", self.residual_mean, negative_ok=True))
        object.__setattr__(self, "residual_sd", _number("residual_sd", self.residual_sd))
        _count("residual_n", self.residual_n, 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, in declaration order."""
        return asdict(self)


def parse_fields(cls: type, data: Any) -> Any:
    """Build `cls` (Entry or Correction) from a JSON object; ValueError names the first problem."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, got {_json_type(data)}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
    if missing:
        raise ValueError(f"missing field {missing[0]!r}")
    return cls(**data)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def canonical_json(value: Any) -> str:
    """Key-sorted, compact JSON: the text checksums and ids are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN/Infinity and duplicate keys; ValueError with a one-line reason."""
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
