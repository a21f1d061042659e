"""Static configuration of one network unit, and its canonical key.

A `BlockConfig` holds everything that fixes a unit's computation once the
builder has resolved channels, strides and op-specific layout flags. A
`BlockKey` adds the input shape; its text form is the key of the per-block
cost cache and of the latency table, so it lists only the fields the op uses.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

ACTIVATIONS = ("relu", "relu6", "hardswish", "silu", "none")
SE_GATES = ("hardsigmoid", "sigmoid")
POOLS = ("avg", "mean")


@dataclass(frozen=True, kw_only=True)
class NormSpec:
    """Batch-norm hyper-parameters (MobileNetV3 uses eps 0.001, momentum 0.01)."""

    eps: float = 1e-5
    momentum: float = 0.1


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    """Resolved static config of a unit; `op` names a registered operator."""

    op: str
    cin: int
    cout: int
    stride: int = 1
    kernel: int = 3
    expand: float = 0.0  # expansion (inverted residual) or reduction (sandglass) ratio as given
    hidden: int = 0  # resolved hidden/expanded/bottleneck channels, 0 where unused
    se: bool = False
    act: str = "relu"
    groups: int = 1
    identity_mult: float = 1.0
    se_ratio: float = 0.25
    se_gate: str = "hardsigmoid"
    first_unit: bool = False  # shuffle_v1: the net's first unit keeps its first 1x1 dense (megvii)
    keep_3x3: bool = False  # sandglass: MobileNeXt keeps both depthwise convs in a lone stride-1 stage
    pool: str = ""  # global_pool: "avg" (adaptive pool) or "mean" (x.mean([2, 3]))
    dropout: float = 0.0  # classifier
    bias: bool = False  # classifier


_SHORT = {
    "stride": "s", "kernel": "k", "expand": "e", "hidden": "hid", "groups": "g", "identity_mult": "im",
    "se_ratio": "ser", "se_gate": "seg", "first_unit": "first", "keep_3x3": "keep3",
    "dropout": "drop",
}


_FIELD_ORDER = tuple(f.name for f in fields(BlockConfig))


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
    for name in _FIELD_ORDER:
        if name in used:
            parts.append(f"{_SHORT.get(name, name)}={_text(getattr(config, name))}")
    return " ".join(parts)


def with_shape(config_part: str, input_shape: tuple[int, int, int]) -> str:
    """A whole key text from its config part and the unit's input shape."""
    c, h, w = input_shape
    return f"{config_part} in={c}x{h}x{w}"
