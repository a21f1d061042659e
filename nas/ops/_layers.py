"""Building pieces shared by the operators: conv+BN+act, activations, squeeze-excite, shuffle, init.

Torch only, on purpose: `nas export` copies the functions and classes an
exported network uses from this file verbatim (see `nas.ops._standalone`), so
nothing here may use the toolkit or any other third-party package, and every
`forward` must script with TorchScript. Norm settings arrive as a plain dict of
BatchNorm2d arguments.
"""
from __future__ import annotations

import torch
from torch import nn


def make_act(name: str) -> nn.Module:
    """An activation layer by name (never called with 'none')."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hardswish":
        return nn.Hardswish(inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}; allowed: relu, relu6, hardswish, silu, none")


def conv_bn(cin: int, cout: int, kernel: int, stride: int, norm: dict, act: str = "none",
            groups: int = 1) -> nn.Sequential:
    """[0] conv without bias, 'same' padding -> [1] BatchNorm -> [2] activation unless 'none'."""
    parts = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
             nn.BatchNorm2d(cout, **norm)]
    return nn.Sequential(*parts) if act == "none" else nn.Sequential(*parts, make_act(act))


def depthwise_bn(channels: int, kernel: int, stride: int, norm: dict, act: str = "none") -> nn.Sequential:
    return conv_bn(channels, channels, kernel, stride, norm, act, groups=channels)


def shuffle_channels(x: torch.Tensor, groups: int, megvii: bool) -> torch.Tensor:
    """Interleave channels across groups (ShuffleNet): torchvision's order, or megvii ShuffleNetV1's
    inverse one, kept there so its pretrained weights load and agree."""
    n, c, h, w = x.shape
    rows, cols = (c // groups, groups) if megvii else (groups, c // groups)
    return x.reshape(n, rows, cols, h, w).transpose(1, 2).reshape(n, c, h, w)


class SqueezeExcite(nn.Module):
    """x * gate(fc2(relu(fc1(avgpool(x))))), with 1x1 convs that have a bias (MobileNetV3)."""

    def __init__(self, channels: int, squeeze: int, gate: str) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU(inplace=True)
        self.scale_activation = nn.Sigmoid() if gate == "sigmoid" else nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet scheme: He-normal (fan-out) convs, unit BatchNorm with fresh statistics,
    N(0, 0.01) linears; zero biases. Any other module with a `reset_parameters` method resets itself."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
        elif callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()  # an op's own parameter module (e.g. a layer scale) sets its start value
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
