"""Standalone versions of every operator, for `nas export`: torch only, no imports from this toolkit.

Why it exists: an exported `.py` must run where only torch is installed, so it
cannot import `nas.ops`. `nas.export` copies the pieces a network needs from
this file's source, verbatim, and `tests/test_export.py` checks them against
`nas.ops` on every shipped space. That makes this the one standalone copy to
keep in step with the operators, not one per export.

Rules for editing: import nothing but torch; keep every attribute and
`nn.Sequential` position named as in `nas.ops`, so that state_dicts load both
ways with strict=True; keep `forward` TorchScript-compatible (the TorchScript
export scripts these classes). Layout decisions the toolkit owns (sandglass
layout, SE squeeze widths, hidden widths) arrive resolved, as plain numbers
and flags in each unit's settings.
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
    raise ValueError(f"unknown activation {name!r}")


def conv_bn(cin: int, cout: int, kernel: int, stride: int, norm: dict, act: str = "none",
            groups: int = 1) -> nn.Sequential:
    """[0] conv without bias, 'same' padding -> [1] BatchNorm -> [2] activation unless 'none'."""
    parts = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
             nn.BatchNorm2d(cout, **norm)]
    return nn.Sequential(*parts) if act == "none" else nn.Sequential(*parts, make_act(act))


def depthwise_bn(channels: int, kernel: int, stride: int, norm: dict, act: str = "none") -> nn.Sequential:
    return conv_bn(channels, channels, kernel, stride, norm, act, groups=channels)


def shuffle_channels(x: torch.Tensor, groups: int, megvii: bool) -> torch.Tensor:
    """Interleave channels across groups: torchvision's order, or megvii ShuffleNetV1's inverse one."""
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


class ConvBNAct(nn.Module):
    """KxK conv + BN + activation: stems, head convs, or a stage op."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, norm: dict) -> None:
        super().__init__()
        self.conv = conv_bn(cin, cout, kernel, stride, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MaxPool(nn.Module):
    """The max-pool after a ShuffleNet stem."""

    def __init__(self, kernel: int, stride: int, norm: dict) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel, stride, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class DepthwiseSeparable(nn.Module):
    """MobileNetV1: depthwise + BN + act -> SE when `se` (its squeeze width) > 0 -> pointwise + BN + act."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, se: int, norm: dict,
                 se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.dw = depthwise_bn(cin, kernel, stride, norm, act)
        self.se = SqueezeExcite(cin, se, se_gate) if se else nn.Identity()
        self.pw = conv_bn(cin, cout, 1, 1, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3: [1x1 expand, unless hidden == cin] -> depthwise -> [SE] -> 1x1 linear projection.

    The input is added back when the stride is 1 and the widths match.
    """

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
            return x + self.block(x)
        return self.block(x)


class SqueezeExciteUnit(nn.Module):
    """Squeeze-and-excitation as a stage op of its own (keeps the shape)."""

    def __init__(self, cin: int, se: int, norm: dict, se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.se = SqueezeExcite(cin, se, se_gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(x)


class Sandglass(nn.Module):
    """MobileNeXt: [dw] -> 1x1 reduce (linear) -> 1x1 expand + act -> [dw, strided, linear] -> [SE].

    `first_dw`, `last_dw` and `residual` are the toolkit's resolved layout; the
    residual adds only the first `identity` channels.
    """

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        k = self.identity_channels
        if not self.use_residual:
            return out
        if k == out.shape[1]:
            return x + out
        return torch.cat([x[:, :k] + out[:, :k], out[:, k:]], dim=1)


class ShuffleV1(nn.Module):
    """ShuffleNetV1 (megvii): grouped 1x1 -> dw -> shuffle -> grouped 1x1; add (stride 1) or concat a pooled input.

    `first_unit`: the network's first unit keeps its first 1x1 dense.
    """

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, act: str, groups: int,
                 first_unit: bool, norm: dict) -> None:
        super().__init__()
        self.groups = groups
        self.branch_main_1 = nn.Sequential(conv_bn(cin, hidden, 1, 1, norm, act, groups=1 if first_unit else groups),
                                           depthwise_bn(hidden, kernel, stride, norm))
        self.branch_main_2 = conv_bn(hidden, cout - cin if stride == 2 else cout, 1, 1, norm, groups=groups)
        self.branch_proj = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.act = nn.Identity() if act == "none" else make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = shuffle_channels(out, self.groups, True)
        out = self.branch_main_2(out)
        if self.branch_proj is not None:
            return torch.cat([self.branch_proj(x), self.act(out)], dim=1)
        return self.act(x + out)


class ShuffleV2(nn.Module):
    """ShuffleNetV2 (torchvision): split and transform one half (stride 1) or two strided branches; shuffle."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, norm: dict) -> None:
        super().__init__()
        half = cout // 2
        self.branch1 = None
        if stride > 1:
            self.branch1 = nn.Sequential(depthwise_bn(cin, kernel, stride, norm), conv_bn(cin, half, 1, 1, norm, act))
        self.branch2 = nn.Sequential(conv_bn(cin if stride > 1 else half, half, 1, 1, norm, act),
                                     depthwise_bn(half, kernel, stride, norm), conv_bn(half, half, 1, 1, norm, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is not None:
            return shuffle_channels(torch.cat([self.branch1(x), self.branch2(x)], dim=1), 2, False)
        keep, work = x.chunk(2, dim=1)
        return shuffle_channels(torch.cat([keep, self.branch2(work)], dim=1), 2, False)


class GlobalPool(nn.Module):
    """To (N, C): adaptive average pooling ('avg') or a spatial mean ('mean')."""

    def __init__(self, pool: str, norm: dict) -> None:
        super().__init__()
        self.use_mean = pool == "mean"
        self.avgpool = None if self.use_mean else nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.avgpool is not None:
            return torch.flatten(self.avgpool(x), 1)
        return x.mean([2, 3])


class Classifier(nn.Module):
    """[Linear to `hidden` + act, when hidden > 0] -> [Dropout, when > 0] -> Linear to the classes."""

    def __init__(self, cin: int, hidden: int, act: str, dropout: float, bias: bool, num_classes: int,
                 norm: dict) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden:
            layers.append(nn.Linear(cin, hidden))
            if act != "none":
                layers.append(make_act(act))
        if dropout > 0:
            layers.append(nn.Dropout(p=dropout, inplace=True))
        layers.append(nn.Linear(hidden or cin, num_classes, bias=bias))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(x, 1))


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet scheme: He-normal (fan-out) convs, unit BatchNorm, N(0, 0.01) linears; zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Network(nn.Module):
    """stem -> blocks -> head, each an nn.Sequential of units made from `units` rows (part, op, settings)."""

    def __init__(self, units: tuple, ops: dict, norm: dict, num_classes: int) -> None:
        super().__init__()
        parts: dict[str, list[nn.Module]] = {"stem": [], "blocks": [], "head": []}
        for part, op, settings in units:
            extra = {"num_classes": num_classes} if op == "classifier" else {}
            parts[part].append(ops[op](**settings, **extra, norm=norm))
        self.stem = nn.Sequential(*parts["stem"])
        self.blocks = nn.Sequential(*parts["blocks"])
        self.head = nn.Sequential(*parts["head"])
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


# The toolkit's operator names -> the classes above. Not copied into exports: each writes its own,
# with only the operators it uses.
OPS = {
    "conv_bn_act": ConvBNAct, "max_pool": MaxPool, "dwsep": DepthwiseSeparable,
    "inverted_residual": InvertedResidual, "squeeze_excite": SqueezeExciteUnit, "sandglass": Sandglass,
    "shuffle_v1": ShuffleV1, "shuffle_v2": ShuffleV2, "global_pool": GlobalPool, "classifier": Classifier,
}
