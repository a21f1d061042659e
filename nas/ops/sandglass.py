"""MobileNeXt's sandglass block, following the official code's layout rules."""
from __future__ import annotations

import math

import torch
from torch import nn

from nas.channels import make_divisible
from nas.ops.base import Op
from nas.ops.config import BlockConfig, NormSpec
from nas.ops.layers import ConvBNAct, SqueezeExcite, depthwise
from nas.ops.registry import register


@register
class Sandglass(Op):
    """dw KxK -> 1x1 reduce (linear) -> 1x1 expand + act -> dw KxK (linear), residual on the wide ends.

    `expand` is the reduction ratio t: hidden = in // t, raised to
    make_divisible(ceil(out / 6), 16) when smaller than out / 6. Layout, the
    first rule that applies (MobileNeXt-1.0):
      1. t == 2: the full layout; only the last depthwise conv strides.
      2. in != out, stride 1, not keep_3x3: the two 1x1 convs only.
      3. in != out, stride 2: the two 1x1 convs, then the strided depthwise conv.
      4. otherwise: the full layout, last depthwise at the block's stride.
    The residual is used in case 4 with stride 1, equal widths and not
    keep_3x3; it adds only the first round(in * identity_mult) channels.
    Optional SE acts on the block output, before the residual.
    """

    name = "sandglass"
    fields = frozenset({"kernel", "expand", "hidden", "act", "identity_mult", "se", "se_ratio", "se_gate"})
    required = (("expand", "hidden"),)
    key_fields = frozenset({"stride", "kernel", "hidden", "act", "identity_mult", "keep_3x3",
                            "se", "se_ratio", "se_gate", "expand"})

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
    def check(cls, config: BlockConfig) -> str | None:
        if config.hidden < 1:
            return f"sandglass hidden width must be at least 1 (got {config.hidden})"
        return None

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        c = config
        first_dw, last_dw, self.use_residual = self.layout(c)
        layers: list[nn.Module] = []
        if first_dw:
            layers.append(depthwise(c.cin, c.kernel, 1, norm, c.act))
        layers.append(ConvBNAct(c.cin, c.hidden, 1, 1, norm, "none"))
        layers.append(ConvBNAct(c.hidden, c.cout, 1, 1, norm, c.act))
        if last_dw:
            layers.append(depthwise(c.cout, c.kernel, c.stride, norm, "none"))
        if c.se:
            layers.append(SqueezeExcite(c.cout, c.se_ratio, c.se_gate))
        self.conv = nn.Sequential(*layers)
        self.identity_channels = int(round(c.cin * c.identity_mult))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if not self.use_residual:
            return out
        k = self.identity_channels
        if k == out.shape[1]:
            return out + x
        return torch.cat([out[:, :k] + x[:, :k], out[:, k:]], dim=1)
