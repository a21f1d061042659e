"""MobileNetV4 operators (Qin et al., 2024): the universal inverted bottleneck and the fused inverted bottleneck.

Layer order, BN and activation placement, hidden-width rounding and stride
placement follow timm's `UniversalInvertedResidual` and `EdgeResidual`, which
build `mobilenetv4_conv_small/medium/large` (the public PyTorch reference).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas.channels import make_divisible
from nas.ops._base import Example, Op
from nas.ops._config import BlockConfig
from nas.ops._fields import KERNELS, Field, declare_field, number_problem
from nas.ops._layers import SqueezeExcite, conv_bn, depthwise_bn
from nas.ops._registry import register

_SE_FIELDS = frozenset({"se", "se_ratio", "se_gate"})


def optional_kernel(v: Any) -> str | None:
    """A depthwise kernel that may be left out: 0 (none) or an odd size."""
    if isinstance(v, bool) or not isinstance(v, int) or (v != 0 and v not in KERNELS):
        return f"{v!r} is not 0 (none) or one of the allowed odd sizes ({', '.join(map(str, KERNELS))})"
    return None


def layer_scale_problem(v: Any) -> str | None:
    return number_problem(v, 0, 1, low_open=False)


for _spec in (
    Field(name="start_kernel", default=0, check=optional_kernel, key_short="ks", code="sk", core=True),
    Field(name="mid_kernel", default=3, check=optional_kernel, key_short="km", code="mk", core=True),
    Field(name="layer_scale", default=0.0, check=layer_scale_problem, key_short="ls", code="ls"),
):
    declare_field(_spec)


def _hidden(cin: int, expand: float | None, hidden: int | None) -> int:
    """timm's mid width: make_divisible(in * expand, 8), unless given."""
    return hidden if hidden is not None else make_divisible(cin * (expand or 1))


class LayerScale(nn.Module):
    """Per-channel learnable gain on the block output (timm's LayerScale2d), started at `init`."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.init = init
        self.gamma = nn.Parameter(torch.full((channels,), init))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)


@register
class UniversalInvertedBottleneck(Op):
    """MobileNetV4 UIB: [start dw + BN] -> 1x1 expand + BN + act -> [mid dw + BN + act] -> [SE] -> 1x1 project
    + BN -> [layer scale].

    `start_kernel` / `mid_kernel` 0 leave that depthwise conv out, giving four blocks from one template:
    inverted bottleneck (0, k), ConvNext-like (k, 0), ExtraDW (k, k) and FFN (0, 0). The stride sits on
    the mid depthwise conv when there is one, else on the start one (an FFN cannot stride). The 1x1
    expansion is always there, even when hidden == in. Residual at stride 1 with equal widths.
    """

    name = "uib"
    short = "ub"
    fields = frozenset({"start_kernel", "mid_kernel", "expand", "hidden", "act", "layer_scale"}) | _SE_FIELDS
    required = (("expand", "hidden"),)
    se_width = "hidden"
    example = Example(32, (
        {"stride": 2, "width": 48, "blocks": [
            {"op": "uib", "start_kernel": 5, "mid_kernel": 3, "expand": 3},
            {"op": "uib", "start_kernel": 3, "mid_kernel": 0, "expand": 4, "layer_scale": 0.5},
            {"op": "uib", "start_kernel": 0, "mid_kernel": 0, "expand": 2, "act": "hardswish"},
            {"op": "uib", "start_kernel": 0, "mid_kernel": 5, "expand": 1, "se": True}]},
        {"stride": 2, "width": 64, "blocks": [{"op": "uib", "start_kernel": 3, "mid_kernel": 0, "hidden": 72}]},
    ))

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        return _hidden(cin, expand, hidden)

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        if config.stride != 1 and not config.start_kernel and not config.mid_kernel:
            return f"uib without a depthwise conv cannot stride (got stride {config.stride})"
        return None

    @classmethod
    def derived(cls, config: BlockConfig) -> dict[str, Any]:
        return {"start_stride": 1 if config.mid_kernel else config.stride}

    def __init__(self, cin: int, hidden: int, cout: int, start_kernel: int, mid_kernel: int, stride: int,
                 start_stride: int, act: str, layer_scale: float, se: int, norm: dict,
                 se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        start = [depthwise_bn(cin, start_kernel, start_stride, norm)] if start_kernel else []
        mid = [depthwise_bn(hidden, mid_kernel, stride, norm, act)] if mid_kernel else []
        excite = [SqueezeExcite(hidden, se, se_gate)] if se else []
        scale = [LayerScale(cout, layer_scale)] if layer_scale else []
        self.block = nn.Sequential(*start, conv_bn(cin, hidden, 1, 1, norm, act), *mid, *excite,
                                   conv_bn(hidden, cout, 1, 1, norm), *scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return self.block(x) + x
        return self.block(x)


@register
class FusedInvertedBottleneck(Op):
    """MobileNetV4 / EfficientNet-EdgeTPU fused IB: KxK conv expand (strided) + BN + act -> [SE] -> 1x1 project
    + BN. Hidden width make_divisible(in * expand, 8); residual at stride 1 with equal widths; no SE by default."""

    name = "fused_ib"
    short = "fib"
    fields = frozenset({"kernel", "expand", "hidden", "act"}) | _SE_FIELDS
    required = (("expand", "hidden"),)
    se_width = "hidden"
    example = Example(24, (
        {"stride": 2, "width": 32, "blocks": [
            {"op": "fused_ib", "expand": 4}, {"op": "fused_ib", "expand": 2, "kernel": 5, "se": True, "act": "relu6"}]},
    ))

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        return _hidden(cin, expand, hidden)

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, act: str, se: int,
                 norm: dict, se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        excite = [SqueezeExcite(hidden, se, se_gate)] if se else []
        self.block = nn.Sequential(conv_bn(cin, hidden, kernel, stride, norm, act), *excite,
                                   conv_bn(hidden, cout, 1, 1, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return self.block(x) + x
        return self.block(x)
