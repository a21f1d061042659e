"""Building pieces shared by the operators: conv+BN+act, activations, squeeze-excite, shuffle."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch
from torch import nn

from nas.channels import make_divisible
from nas.ops.config import NormSpec


_SKIP_INIT = contextvars.ContextVar("nas_skip_init", default=False)


@contextlib.contextmanager
def deferred_init() -> Iterator[None]:
    """Build layers with allocated but uninitialised weights; call `reset_parameters` later.

    Initialising tens of millions of weights costs far more than building the
    modules, and costing or tracing a network does not need the values.
    """
    token = _SKIP_INIT.set(True)
    try:
        yield
    finally:
        _SKIP_INIT.reset(token)


class Conv2d(nn.Conv2d):
    """nn.Conv2d initialised once, as torchvision's MobileNets: He normal (fan-out), zero bias."""

    def reset_parameters(self) -> None:
        if _SKIP_INIT.get():
            return
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class BatchNorm2d(nn.BatchNorm2d):
    def reset_parameters(self) -> None:
        if _SKIP_INIT.get():
            return
        super().reset_parameters()


class Linear(nn.Linear):
    """nn.Linear initialised as torchvision's MobileNets: normal(0, 0.01), zero bias."""

    def reset_parameters(self) -> None:
        if _SKIP_INIT.get():
            return
        nn.init.normal_(self.weight, 0, 0.01)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


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
            Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            BatchNorm2d(cout, eps=norm.eps, momentum=norm.momentum),
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
        self.fc1 = Conv2d(channels, squeeze, 1)
        self.fc2 = Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU(inplace=True)
        self.scale_activation = nn.Hardsigmoid(inplace=True) if gate == "hardsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def channel_shuffle(x: torch.Tensor, groups: int, *, megvii_order: bool = False) -> torch.Tensor:
    """Interleave channels across `groups` (ShuffleNet).

    torchvision's order by default; megvii's ShuffleNetV1 code uses the inverse
    permutation, kept there so its pretrained weights load and agree.
    """
    n, c, h, w = x.shape
    if megvii_order:
        return x.reshape(n, c // groups, groups, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
