"""The operator registry: name -> operator class. Registering a name twice is an error."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nas.ops.base import Op

_REGISTRY: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add an operator under `cls.name`."""
    if cls.name in _REGISTRY:
        raise ValueError(f"operator {cls.name!r} is already registered by {_REGISTRY[cls.name].__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def get_op(name: str) -> type[Op]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def op_names(*, stage_only: bool = False) -> tuple[str, ...]:
    """Registered names; with `stage_only`, only those that can stand in a stage."""
    return tuple(sorted(n for n, c in _REGISTRY.items() if c.stage_op or not stage_only))
