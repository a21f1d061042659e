"""MobileNet-family operators: conv_bn_act, dwsep (V1), inverted_residual (V2/V3), squeeze_excite."""
from __future__ import annotations

import torch
from torch import nn

from nas.ops.base import Op
from nas.ops.config import BlockConfig, NormSpec
from nas.ops.layers import ConvBNAct, SqueezeExcite, depthwise
from nas.ops.registry import register

_SE_FIELDS = frozenset({"se", "se_ratio", "se_gate"})


@register
class ConvBNActOp(Op):
    """A plain KxK conv + BN + activation (stems, heads, or a stage op)."""

    name = "conv_bn_act"
    fields = frozenset({"kernel", "act"})
    key_fields = frozenset({"stride", "kernel", "act"})

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        self.conv = ConvBNAct(config.cin, config.cout, config.kernel, config.stride, norm, config.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register
class DepthwiseSeparable(Op):
    """MobileNetV1: depthwise KxK + BN + act -> [SE] -> pointwise + BN + act."""

    name = "dwsep"
    fields = frozenset({"kernel", "act"}) | _SE_FIELDS
    key_fields = frozenset({"stride", "kernel", "act", "se", "se_ratio", "se_gate"})

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        c = config
        self.dw = depthwise(c.cin, c.kernel, c.stride, norm, c.act)
        self.se = SqueezeExcite(c.cin, c.se_ratio, c.se_gate) if c.se else nn.Identity()
        self.pw = ConvBNAct(c.cin, c.cout, 1, 1, norm, c.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


@register
class InvertedResidual(Op):
    """MobileNetV2/V3: [1x1 expand + BN + act] -> dw KxK + BN + act -> [SE] -> 1x1 project + BN.

    The expansion is skipped when the hidden width equals the input width;
    the residual is used when stride is 1 and input and output widths match.
    """

    name = "inverted_residual"
    fields = frozenset({"kernel", "expand", "hidden", "act"}) | _SE_FIELDS
    required = (("expand", "hidden"),)
    key_fields = frozenset({"stride", "kernel", "hidden", "act", "se", "se_ratio", "se_gate"})

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        return hidden if hidden is not None else int(round(cin * (expand or 1)))

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        c = config
        self.use_residual = c.stride == 1 and c.cin == c.cout
        layers: list[nn.Module] = []
        if c.hidden != c.cin:
            layers.append(ConvBNAct(c.cin, c.hidden, 1, 1, norm, c.act))
        layers.append(depthwise(c.hidden, c.kernel, c.stride, norm, c.act))
        if c.se:
            layers.append(SqueezeExcite(c.hidden, c.se_ratio, c.se_gate))
        layers.append(ConvBNAct(c.hidden, c.cout, 1, 1, norm, "none"))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


@register
class SqueezeExciteOp(Op):
    """Squeeze-and-excitation on its own: keeps the shape, so stride 1 and equal widths only."""

    name = "squeeze_excite"
    fields = frozenset({"se_ratio", "se_gate"})
    key_fields = frozenset({"stride", "se_ratio", "se_gate"})

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        if config.stride != 1 or config.cin != config.cout:
            return (f"squeeze_excite keeps its input shape, so it needs stride 1 and equal widths "
                    f"(got {config.cin}->{config.cout} at stride {config.stride})")
        return None

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        self.se = SqueezeExcite(config.cin, config.se_ratio, config.se_gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(x)
