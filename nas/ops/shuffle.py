"""ShuffleNet units: V1 (grouped 1x1 + channel shuffle, megvii layout) and V2 (channel split, torchvision layout)."""
from __future__ import annotations

import torch
from torch import nn

from nas.ops._base import Example, Op
from nas.ops._config import BlockConfig
from nas.ops._layers import conv_bn, depthwise_bn, make_act, shuffle_channels
from nas.ops._registry import register


@register
class ShuffleV1(Op):
    """ShuffleNetV1 (megvii): grouped 1x1 to out/4 + BN + act -> dw KxK + BN -> shuffle -> grouped 1x1 + BN.

    Stride 1: act(x + out). Stride 2: concat[avgpool3x3(x), act(out)], the
    main branch producing out - in channels. `first_unit`: the network's first
    unit keeps its first 1x1 dense (groups=1), as in the megvii reference.
    """

    name = "shuffle_v1"
    elastic_channels = False  # channel split and shuffle are positional: no first-N cut
    short = "sh1"
    fields = frozenset({"kernel", "groups", "act"})
    required = (("groups",),)
    position_flags = frozenset({"first_unit"})
    example = Example(128, ({"stride": 2, "width": 192, "blocks": [
        {"op": "shuffle_v1", "groups": 2}, {"op": "shuffle_v1", "groups": 3, "kernel": 5, "act": "silu"}]},))

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        return cout // 4

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        c, g = config, config.groups
        branch = c.cout - c.cin if c.stride == 2 else c.cout
        if c.stride == 1 and c.cin != c.cout:
            return f"shuffle_v1 at stride 1 adds its input to its output, so widths must match (got {c.cin}->{c.cout})"
        if c.stride == 2 and branch <= 0:
            return f"shuffle_v1 at stride 2 concatenates its input, so it must widen (got {c.cin}->{c.cout})"
        for what, n in (("input width", c.cin if not c.first_unit else g), ("bottleneck width", c.hidden),
                        ("branch width", branch)):
            if n % g:
                return f"groups {g} does not divide the {what} {n} of shuffle_v1 {c.cin}->{c.cout}"
        return None

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


@register
class ShuffleV2(Op):
    """ShuffleNetV2 (torchvision): stride 1 splits the channels and transforms one half; stride 2 runs two
    strided branches. A channel shuffle follows."""

    name = "shuffle_v2"
    elastic_channels = False  # channel split and shuffle are positional: no first-N cut
    short = "sh2"
    fields = frozenset({"kernel", "act"})
    example = Example(192, (
        {"stride": 1, "width": 192, "blocks": [{"op": "shuffle_v2", "act": "hardswish"}]},
        {"stride": 2, "width": 160, "blocks": [{"op": "shuffle_v2", "kernel": 5}]},
    ))

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        return cout // 2

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        c = config
        if c.cout % 2:
            return f"shuffle_v2 splits its output in two halves, so the width must be even (got {c.cout})"
        if c.stride == 1 and c.cin != c.cout:
            return f"shuffle_v2 at stride 1 passes half its input through, so widths must match (got {c.cin}->{c.cout})"
        return None

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
