"""The typed, frozen form of a search space. A fixed architecture is a space with no choices left.

Every choosable value is held as a tuple of choices; a fixed value is a
1-tuple. Nothing below `nas.space.load` sees a raw YAML dict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nas.channels import make_divisible
from nas.ops import NormSpec


@dataclass(frozen=True, kw_only=True)
class BlockSpace:
    """Choices for one block position: field -> tuple of allowed values (defaults filled in)."""

    choices: Mapping[str, tuple[Any, ...]]
    path: str  # where it came from in the YAML, for error messages

    def get(self, field: str) -> tuple[Any, ...] | None:
        return self.choices.get(field)


@dataclass(frozen=True, kw_only=True)
class StageSpace:
    name: str
    depth: tuple[int, ...]
    stride: int
    width: tuple[int, ...]
    blocks: tuple[BlockSpace, ...]  # one per block position, len == max(depth)
    path: str


@dataclass(frozen=True, kw_only=True)
class StemSpec:
    out: int
    kernel: int = 3
    stride: int = 2
    act: str = "relu"
    pool: str = "none"  # "max": a 3x3 stride-2 max-pool follows (ShuffleNet)


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    conv_out: int | None = None  # optional 1x1 conv + BN + act before pooling
    conv_act: str = "relu"
    pool: str = "avg"
    hidden: int | None = None  # optional Linear + act before the classifier (MobileNetV3)
    hidden_act: str = "hardswish"
    hidden_norm: bool = False  # the hidden layer as 1x1 conv (no bias) + BN + act (MobileNetV4)
    dropout: float = 0.0
    bias: bool = True


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """A whole space (or a fixed architecture) as loaded and validated from YAML."""

    name: str
    file: str
    in_channels: int
    num_classes: int
    resolution: tuple[int, ...]
    width_mult: float
    channel_divisor: int
    norm: NormSpec
    stem: StemSpec
    stages: tuple[StageSpace, ...]
    head: HeadSpec
    backbone: str | None = None  # path of a fixed architecture that must be a point of this space

    def __post_init__(self) -> None:
        # Planning memo (decision names, resolved units): not a field, so equality ignores it.
        object.__setattr__(self, "_memo", {})

    def channels(self, width: int) -> int:
        """Real channels of a stage or stem width after the width multiplier."""
        return make_divisible(width * self.width_mult, self.channel_divisor)

    def head_channels(self, width: int) -> int:
        """Head widths never shrink below their 1.0 value (MobileNetV2's convention)."""
        return make_divisible(width * max(1.0, self.width_mult), self.channel_divisor)

    @property
    def is_fixed(self) -> bool:
        """No choice left anywhere (`nas.space.decisions` is empty)."""
        blocks = (ch for stage in self.stages for block in stage.blocks for ch in block.choices.values())
        return all(len(ch) == 1 for ch in (self.resolution, *(s.depth for s in self.stages),
                                           *(s.width for s in self.stages), *blocks))
