"""The operator base class: a small static nn.Module plus the rules the space checks at load."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from nas.ops.config import BlockConfig, BlockKey, NormSpec, config_text


class Op(nn.Module):
    """A unit built from one resolved `BlockConfig`.

    Class attributes tell the space which YAML block fields the op reads
    (`fields`), which of them must be given (`required`, any one of each
    tuple), and which config fields enter its cost/latency key (`key_fields`).
    """

    name: ClassVar[str]
    stage_op: ClassVar[bool] = True
    fields: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[tuple[tuple[str, ...], ...]] = ()
    key_fields: ClassVar[frozenset[str]] = frozenset({"stride"})

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__()
        self.config = config
        self.input_shape: tuple[int, int, int] | None = None  # set by the builder

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        """Resolved hidden width for this op (0 when it has none)."""
        return 0

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        """Why this config cannot be built (one phrase), or None if it can."""
        return None

    @classmethod
    def key_text(cls, key: BlockKey) -> str:
        return key.text(cls.key_fields)

    @classmethod
    def config_text(cls, config: BlockConfig) -> str:
        """`key_text` without the input shape (see `nas.ops.config.with_shape`)."""
        return config_text(config, cls.key_fields)

    @property
    def key(self) -> BlockKey:
        if self.input_shape is None:
            raise RuntimeError(f"{self.name} unit has no input shape: it was not made by nas.builder")
        return BlockKey(self.config, self.input_shape)


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv or pool (padding kernel // 2)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1
