"""The operator registry: name -> operator class. Registration checks the op's contract and
refuses a name or short name given twice."""
from __future__ import annotations

from typing import TYPE_CHECKING

from nas.ops._fields import field

if TYPE_CHECKING:
    from nas.ops._base import Op

_REGISTRY: dict[str, type[Op]] = {}


def _contract_problem(cls: type[Op]) -> str | None:
    for name in sorted(cls.fields | cls.position_flags):
        try:
            spec = field(name)
        except KeyError as exc:
            return str(exc.args[0])
        if (name in cls.fields) != spec.block:
            return f"{name!r} is {'not ' if not spec.block else ''}a YAML block field"
    if cls.stage_op and not cls.short:
        return "a stage op needs a short name for architecture strings"
    taken = {other.short: other.name for other in _REGISTRY.values() if other.short}
    if cls.short in taken:
        return f"short name {cls.short!r} is already used by {taken[cls.short]!r}"
    return None


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add an operator under `cls.name` after checking its contract. An op that
    does not list `key_fields` gets stride, its position flags and the fields it reads that enter keys."""
    if cls.name in _REGISTRY:
        raise ValueError(f"operator {cls.name!r} is already registered by {_REGISTRY[cls.name].__qualname__}")
    problem = _contract_problem(cls)
    if problem:
        raise ValueError(f"operator {cls.name!r}: {problem}")
    if "key_fields" not in vars(cls):
        cls.key_fields = frozenset({"stride", *cls.position_flags, *(f for f in cls.fields if field(f).in_key)})
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove an operator (tests that register a throwaway one)."""
    del _REGISTRY[name]


def get_op(name: str) -> type[Op]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def op_names(*, stage_only: bool = False) -> tuple[str, ...]:
    """Registered names; with `stage_only`, only those that can stand in a stage."""
    return tuple(sorted(n for n, c in _REGISTRY.items() if c.stage_op or not stage_only))
