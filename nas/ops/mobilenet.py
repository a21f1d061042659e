"""MobileNet-family operators: conv_bn_act, dwsep (V1), inverted_residual (V2/V3), squeeze_excite."""
from __future__ import annotations

import torch
from torch import nn

from nas.ops._base import Example, Op
from nas.ops._config import BlockConfig
from nas.ops._layers import SqueezeExcite, conv_bn, depthwise_bn
from nas.ops._registry import register

_SE_FIELDS = frozenset({"se", "se_ratio", "se_gate"})


@register
class ConvBNAct(Op):
    """KxK conv + BN + activation: stems, head convs, or a stage op."""

    name = "conv_bn_act"
    short = "cba"
    fields = frozenset({"kernel", "act"})
    example = Example(24, ({"stride": 1, "depth": 1, "width": 48, "block": {"op": "conv_bn_act", "kernel": 1, "act": "none"}},))

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, norm: dict) -> None:
        super().__init__()
        self.conv = conv_bn(cin, cout, kernel, stride, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register
class DepthwiseSeparable(Op):
    """MobileNetV1: depthwise + BN + act -> SE when `se` (its squeeze width) > 0 -> pointwise + BN + act."""

    name = "dwsep"
    short = "ds"
    fields = frozenset({"kernel", "act"}) | _SE_FIELDS
    se_width = "cin"
    example = Example(48, ({"stride": 2, "width": 64, "blocks": [
        {"op": "dwsep", "se": True, "se_gate": "sigmoid", "act": "relu6"}, {"op": "dwsep", "kernel": 5}]},))

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, se: int, norm: dict,
                 se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.dw = depthwise_bn(cin, kernel, stride, norm, act)
        self.se = SqueezeExcite(cin, se, se_gate) if se else nn.Identity()
        self.pw = conv_bn(cin, cout, 1, 1, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


@register
class InvertedResidual(Op):
    """MobileNetV2/V3: [1x1 expand, unless hidden == cin] -> depthwise -> [SE] -> 1x1 linear projection.

    The input is added back when the stride is 1 and the widths match.
    """

    name = "inverted_residual"
    short = "ir"
    fields = frozenset({"kernel", "expand", "hidden", "act"}) | _SE_FIELDS
    required = (("expand", "hidden"),)
    se_width = "hidden"
    example = Example(64, ({"stride": 1, "width": 96, "blocks": [
        {"op": "inverted_residual", "expand": 1, "se": True, "se_gate": "sigmoid"},
        {"op": "inverted_residual", "expand": 4, "kernel": 7, "act": "none"}]},))

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        return hidden if hidden is not None else int(round(cin * (expand or 1)))

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, act: str, se: int,
                 norm: dict, se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        expand = [] if hidden == cin else [conv_bn(cin, hidden, 1, 1, norm, act)]
        excite = [SqueezeExcite(hidden, se, se_gate)] if se else []
        self.block = nn.Sequential(*expand, depthwise_bn(hidden, kernel, stride, norm, act), *excite,
                                   conv_bn(hidden, cout, 1, 1, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return self.block(x) + x
        return self.block(x)


@register
class SqueezeExciteUnit(Op):
    """Squeeze-and-excitation as a stage op of its own: keeps the shape, so stride 1 and equal widths only."""

    name = "squeeze_excite"
    short = "sqe"
    fields = frozenset({"se_ratio", "se_gate"})
    se_width = "cin"
    example = Example(160, ({"stride": 1, "depth": 1, "width": 160, "block": {"op": "squeeze_excite"}},))

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        if config.stride != 1 or config.cin != config.cout:
            return (f"squeeze_excite keeps its input shape, so it needs stride 1 and equal widths "
                    f"(got {config.cin}->{config.cout} at stride {config.stride})")
        return None

    def __init__(self, cin: int, se: int, norm: dict, se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.se = SqueezeExcite(cin, se, se_gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(x)


ConvBNActOp, SqueezeExciteOp = ConvBNAct, SqueezeExciteUnit  # the names before export shared these classes
