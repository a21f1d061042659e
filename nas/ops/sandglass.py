"""MobileNeXt's sandglass block, following the official code's layout rules."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nas.channels import make_divisible
from nas.ops._base import Example, Op
from nas.ops._config import BlockConfig
from nas.ops._layers import SqueezeExcite, conv_bn, depthwise_bn
from nas.ops._registry import register


@register
class Sandglass(Op):
    """MobileNeXt: [dw] -> 1x1 reduce (linear) -> 1x1 expand + act -> [dw, strided, linear] -> [SE].

    `expand` is the reduction ratio t: hidden = in // t, raised to
    make_divisible(ceil(out / 6), 16) when smaller than out / 6. Layout
    (`first_dw`, `last_dw`, `residual`), the first rule that applies (MobileNeXt-1.0):
      1. t == 2: the full layout; only the last depthwise conv strides.
      2. in != out, stride 1, not keep_3x3: the two 1x1 convs only.
      3. in != out, stride 2: the two 1x1 convs, then the strided depthwise conv.
      4. otherwise: the full layout, last depthwise at the block's stride.
    The residual is used in case 4 with stride 1, equal widths and not
    keep_3x3; it adds only the first `identity` = round(in * identity_mult)
    channels. Optional SE acts on the block output, before the residual.
    """

    name = "sandglass"
    short = "sg"
    fields = frozenset({"kernel", "expand", "hidden", "act", "identity_mult", "se", "se_ratio", "se_gate"})
    required = (("expand", "hidden"),)
    position_flags = frozenset({"keep_3x3"})
    key_fields = frozenset({"stride", "kernel", "hidden", "act", "identity_mult", "keep_3x3",
                            "se", "se_ratio", "se_gate", "expand"})  # expand: t == 2 picks the layout
    se_width = "cout"
    example = Example(96, (
        {"stride": 1, "width": 80, "blocks": [{"op": "sandglass", "expand": 4, "se": True, "se_ratio": 0.5}]},
        {"stride": 2, "width": 96, "blocks": [
            {"op": "sandglass", "expand": 4},
            {"op": "sandglass", "expand": 4, "identity_mult": 0.5, "se": True, "act": "silu"},
            {"op": "sandglass", "expand": 2, "kernel": 5, "act": "none"}]},
        {"stride": 1, "width": 128, "blocks": [{"op": "sandglass", "expand": 6}]},
        {"stride": 2, "width": 128, "blocks": [{"op": "sandglass", "hidden": 24}]},
    ))

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        if hidden is not None:
            return hidden
        width = int(cin // expand)
        if width < cout / 6.0:
            width = make_divisible(math.ceil(cout / 6.0), 16)
        return width

    @staticmethod
    def layout(config: BlockConfig) -> tuple[bool, bool, bool]:
        """(first depthwise, last depthwise, residual) for this config."""
        c = config
        if c.expand == 2:
            return True, True, False
        if c.cin != c.cout and c.stride == 1 and not c.keep_3x3:
            return False, False, False
        if c.cin != c.cout and c.stride == 2:
            return False, True, False
        return True, True, c.stride == 1 and c.cin == c.cout and not c.keep_3x3

    @classmethod
    def derived(cls, config: BlockConfig) -> dict[str, Any]:
        first_dw, last_dw, residual = cls.layout(config)
        return {"first_dw": first_dw, "last_dw": last_dw, "residual": residual,
                "identity": int(round(config.cin * config.identity_mult))}

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        if config.hidden < 1:
            return f"sandglass hidden width must be at least 1 (got {config.hidden})"
        return None

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, act: str,
                 first_dw: bool, last_dw: bool, residual: bool, identity: int, se: int, norm: dict,
                 se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        head = [depthwise_bn(cin, kernel, 1, norm, act)] if first_dw else []
        tail = [depthwise_bn(cout, kernel, stride, norm)] if last_dw else []
        excite = [SqueezeExcite(cout, se, se_gate)] if se else []
        self.conv = nn.Sequential(*head, conv_bn(cin, hidden, 1, 1, norm), conv_bn(hidden, cout, 1, 1, norm, act),
                                  *tail, *excite)
        self.use_residual, self.identity_channels = residual, identity
        # Whether the identity covers every channel, decided here: a shape read in forward() is a traced
        # value under torch.jit.trace, which then warns that the branch is frozen.
        self.whole_identity = identity == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        k = self.identity_channels
        if not self.use_residual:
            return out
        if self.whole_identity:
            return out + x
        return torch.cat([out[:, :k] + x[:, :k], out[:, k:]], dim=1)
