"""Static configuration of one network unit, and its canonical key.

A `BlockConfig` holds everything that fixes a unit's computation once the
planner has resolved channels, strides and op-specific layout flags: the op,
its widths, and one value for every declared field (`nas.ops._fields`). A
`BlockKey` adds the input shape; its text form is the key of the per-block
cost cache and of the latency table, so it lists only the fields the op uses.
"""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from typing import Any

from nas.ops._fields import all_fields, field


@dataclass(frozen=True, kw_only=True)
class NormSpec:
    """Batch-norm hyper-parameters (MobileNetV3 uses eps 0.001, momentum 0.01)."""

    eps: float = 1e-5
    momentum: float = 0.1


class BlockConfig:
    """Resolved static config of a unit; `op` names a registered operator.

    Keyword-only and frozen like a dataclass, but its fields are the declared
    ones, so an operator file that declares a field extends it. Fields left out
    take their declared default.
    """

    def __init__(self, *, op: str, cin: int, cout: int, **values: Any) -> None:
        specs = all_fields()
        unknown = set(values).difference(f.name for f in specs)
        if unknown:
            raise TypeError(f"BlockConfig got unknown field {sorted(unknown)[0]!r}")
        state = self.__dict__
        state.update(op=op, cin=cin, cout=cout)
        for spec in specs:
            state[spec.name] = values.get(spec.name, spec.default)
        state["_identity"] = (op, cin, cout, *(state[f.name] for f in specs))

    def __getattr__(self, name: str) -> Any:
        # Only reached for fields declared after this config was made: they hold their default.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return field(name).default
        except KeyError:
            raise AttributeError(f"BlockConfig has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockConfig) and self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def __repr__(self) -> str:
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in all_fields()]
        return f"BlockConfig(op={self.op!r}, cin={self.cin}, cout={self.cout}, {', '.join(shown)})"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class BlockKey:
    """A unit's static config plus its input shape (channels, height, width)."""

    config: BlockConfig
    input_shape: tuple[int, int, int]

    def text(self, used: frozenset[str]) -> str:
        """Canonical text: op first, then the used fields in declaration order, then the input shape."""
        return with_shape(config_text(self.config, used), self.input_shape)


def config_text(config: BlockConfig, used: frozenset[str]) -> str:
    """The shape-free part of a key's text: one config recurs at every resolution, so the planner
    makes this once per config and joins each unit's input shape to it (`with_shape`)."""
    parts = [f"op={config.op}", f"cin={config.cin}", f"cout={config.cout}"]
    for spec in all_fields():
        if spec.name in used:
            parts.append(f"{spec.key_short or spec.name}={_text(getattr(config, spec.name))}")
    return " ".join(parts)


def with_shape(config_part: str, input_shape: tuple[int, int, int]) -> str:
    """A whole key text from its config part and the unit's input shape."""
    c, h, w = input_shape
    return f"{config_part} in={c}x{h}x{w}"
