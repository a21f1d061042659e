"""Building pieces shared by the operators: conv+BN+act, activations, squeeze-excite, shuffle."""
from __future__ import annotations

import torch
from torch import nn

from nas.channels import make_divisible
from nas.ops.config import NormSpec


def activation(name: str) -> nn.Module | None:
    """An activation module by name; None for 'none'."""
    if name == "none":
        return None
    layers = {
        "relu": lambda: nn.ReLU(inplace=True),
        "relu6": lambda: nn.ReLU6(inplace=True),
        "hardswish": lambda: nn.Hardswish(inplace=True),
        "silu": lambda: nn.SiLU(inplace=True),
    }
    if name not in layers:
        raise ValueError(f"unknown activation {name!r}; allowed: relu, relu6, hardswish, silu, none")
    return layers[name]()


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional activation, 'same' padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, norm: NormSpec,
                 act: str = "none", groups: int = 1) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=norm.eps, momentum=norm.momentum),
        ]
        act_layer = activation(act)
        if act_layer is not None:
            layers.append(act_layer)
        super().__init__(*layers)


def depthwise(channels: int, kernel: int, stride: int, norm: NormSpec, act: str = "none") -> ConvBNAct:
    return ConvBNAct(channels, channels, kernel, stride, norm, act, groups=channels)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in MobileNetV3: pool -> 1x1 -> ReLU -> 1x1 -> gate -> scale."""

    def __init__(self, channels: int, ratio: float = 0.25, gate: str = "hardsigmoid") -> None:
        super().__init__()
        squeeze = make_divisible(channels * ratio, 8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU(inplace=True)
        self.scale_activation = nn.Hardsigmoid(inplace=True) if gate == "hardsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across `groups` (ShuffleNet)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
