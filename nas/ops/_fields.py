"""Block fields, each declared once: its type and allowed values, the one-line message for a bad value,
its default, its short names in key texts and architecture strings, and whether it enters cost keys.

`BlockConfig`, the YAML schema and reader, architecture encoding, fixed-architecture output and
export all read these declarations, so a new field is one `declare_field` call, usually in the file
of the operator that needs it. Registering a name twice is an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

ACTIVATIONS = ("relu", "relu6", "hardswish", "silu", "none")
SE_GATES = ("hardsigmoid", "sigmoid")
POOLS = ("avg", "mean")
KERNELS = (1, 3, 5, 7, 9, 11)

#: A value check: None when the value is allowed, else why not (one phrase, no location).
Check = Callable[[Any], "str | None"]


def kind(value: Any) -> str:
    """How a YAML value reads in an error message: 'an integer', 'a list', ..."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "empty"}
    return names.get(type(value), type(value).__name__)


def integer_problem(value: Any, minimum: int | None = None, maximum: int | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {value!r} ({kind(value)})"
    if minimum is not None and value < minimum:
        return f"{value} is below the minimum {minimum}"
    if maximum is not None and value > maximum:
        return f"{value} is above the maximum {maximum}"
    return None


def number_problem(value: Any, low: float, high: float, *, low_open: bool = True) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {value!r} ({kind(value)})"
    if math.isnan(value) or (value <= low if low_open else value < low) or value > high:
        return f"{value} is outside the allowed range {'(' if low_open else '['}{low:g}, {high:g}]"
    return None


def boolean_problem(value: Any) -> str | None:
    if not isinstance(value, bool):
        return f"expected true or false, got {value!r} ({kind(value)})"
    return None


def one_of_problem(value: Any, allowed: tuple, what: str = "") -> str | None:
    if isinstance(value, bool) or value not in allowed or type(value) is not type(allowed[0]):
        label = f" {what}" if what else ""
        return f"{value!r} is not one of the allowed{label}: {', '.join(map(str, allowed))}"
    return None


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    return lambda v: integer_problem(v, minimum, maximum)


def number(low: float, high: float) -> Check:
    return lambda v: number_problem(v, low, high)


def one_of(allowed: tuple, what: str = "") -> Check:
    return lambda v: one_of_problem(v, allowed, what)


def odd_size(v: Any) -> str | None:
    """Kernel sizes: odd, so that 'same' padding is kernel // 2."""
    if isinstance(v, bool) or not isinstance(v, int) or v not in KERNELS:
        return f"{v!r} is not one of the allowed odd sizes ({', '.join(map(str, KERNELS))})"
    return None


@dataclass(frozen=True, kw_only=True)
class Field:
    """One setting of a unit.

    `check` is None for settings the planner fills in (cin-free layout flags,
    head settings); otherwise a YAML block may give the field. A block that
    leaves it out gets `default` when `fill`, else the op resolves it (expand,
    hidden). `gate` names a boolean field without which this one changes
    nothing (the SE options). `in_key`: ops that read it put it in their
    cost/latency key unless they list their key fields themselves.
    """

    name: str
    default: Any
    check: Check | None = None
    key_short: str = ""  # name in key texts ("" = the name itself)
    code: str = ""  # prefix in architecture strings, e.g. "k" in "k5"
    allowed: tuple = ()  # the only strings export may write for it
    fill: bool = True
    gate: str = ""
    in_key: bool = True
    core: bool = False  # always written in fixed-architecture YAMLs, even at its default

    @property
    def block(self) -> bool:
        """Whether a YAML block may give this field."""
        return self.check is not None


_FIELDS: dict[str, Field] = {}


def declare_field(spec: Field) -> Field:
    """Add a field (after the existing ones: key texts and decision names follow this order)."""
    if spec.name in _FIELDS or spec.name in ("op", "cin", "cout"):
        raise ValueError(f"block field {spec.name!r} is already declared")
    if not spec.name.isidentifier():
        raise ValueError(f"block field name {spec.name!r} is not an identifier")
    _FIELDS[spec.name] = spec
    return spec


def forget_field(name: str) -> None:
    """Remove a field declared by `declare_field` (tests that declare a throwaway one)."""
    del _FIELDS[name]


def field(name: str) -> Field:
    try:
        return _FIELDS[name]
    except KeyError:
        raise KeyError(f"unknown block field {name!r}; declared: {', '.join(_FIELDS)}") from None


def all_fields() -> tuple[Field, ...]:
    """Every declared field, in declaration order."""
    return tuple(_FIELDS.values())


def block_fields() -> tuple[str, ...]:
    """Keys a YAML block may hold, in canonical order (decision names and encodings follow it)."""
    return ("op", *(f.name for f in _FIELDS.values() if f.block))


for _spec in (
    Field(name="stride", default=1, key_short="s"),
    Field(name="kernel", default=3, check=odd_size, key_short="k", code="k", core=True),
    Field(name="expand", default=0.0, check=number(0, 64), key_short="e", code="e", fill=False, in_key=False,
          core=True),  # expansion (inverted residual) or reduction (sandglass) ratio as given
    Field(name="hidden", default=0, check=integer(minimum=1), key_short="hid", code="h", fill=False, core=True),
    Field(name="se", default=False, check=boolean_problem, code="se", core=True),
    Field(name="act", default="relu", check=one_of(ACTIVATIONS, "activations"), code="a:", allowed=ACTIVATIONS,
          core=True),
    Field(name="groups", default=1, check=integer(minimum=1), key_short="g", code="g", fill=False, core=True),
    Field(name="identity_mult", default=1.0, check=number(0, 1), key_short="im", code="im"),
    Field(name="se_ratio", default=0.25, check=number(0, 1), key_short="ser", code="sr", gate="se"),
    Field(name="se_gate", default="hardsigmoid", check=one_of(SE_GATES, "gates"), key_short="seg", code="sg:",
          allowed=SE_GATES, gate="se"),
    Field(name="first_unit", default=False, key_short="first"),  # shuffle_v1: the net's first unit
    Field(name="keep_3x3", default=False, key_short="keep3"),  # sandglass: a lone stride-1 stage's block
    Field(name="pool", default="", allowed=POOLS),  # global_pool: "avg" (adaptive pool) or "mean"
    Field(name="dropout", default=0.0, key_short="drop"),  # classifier
    Field(name="bias", default=False),  # classifier
):
    declare_field(_spec)
