"""ShuffleNet units: V1 (grouped 1x1 + channel shuffle, megvii layout) and V2 (channel split, torchvision layout)."""
from __future__ import annotations

import torch
from torch import nn

from nas.ops.base import Op
from nas.ops.config import BlockConfig, NormSpec
from nas.ops.layers import ConvBNAct, activation, channel_shuffle, depthwise
from nas.ops.registry import register


@register
class ShuffleV1(Op):
    """grouped 1x1 to out/4 + BN + act -> dw KxK + BN -> shuffle -> grouped 1x1 + BN.

    Stride 1: act(x + out). Stride 2: concat[avgpool3x3(x), act(out)], the
    main branch producing out - in channels. The network's first unit keeps
    its first 1x1 dense (groups=1), as in the megvii reference.
    """

    name = "shuffle_v1"
    fields = frozenset({"kernel", "groups", "act"})
    required = (("groups",),)
    key_fields = frozenset({"stride", "kernel", "groups", "act", "first_unit"})

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

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        c = config
        mid, branch = c.hidden, (c.cout - c.cin if c.stride == 2 else c.cout)
        self.groups, self.stride = c.groups, c.stride
        self.branch_main_1 = nn.Sequential(
            ConvBNAct(c.cin, mid, 1, 1, norm, c.act, groups=1 if c.first_unit else c.groups),
            depthwise(mid, c.kernel, c.stride, norm),
        )
        self.branch_main_2 = ConvBNAct(mid, branch, 1, 1, norm, groups=c.groups)
        self.branch_proj = nn.AvgPool2d(3, 2, 1) if c.stride == 2 else None
        self.act = activation(c.act) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups, megvii_order=True)
        out = self.branch_main_2(out)
        if self.branch_proj is None:
            return self.act(x + out)
        return torch.cat([self.branch_proj(x), self.act(out)], dim=1)


@register
class ShuffleV2(Op):
    """Stride 1: split channels, transform one half. Stride 2: two strided branches. Shuffle after."""

    name = "shuffle_v2"
    fields = frozenset({"kernel", "act"})
    key_fields = frozenset({"stride", "kernel", "act"})

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

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        c = config
        half = c.hidden
        self.stride = c.stride
        if c.stride > 1:
            self.branch1 = nn.Sequential(
                depthwise(c.cin, c.kernel, c.stride, norm),
                ConvBNAct(c.cin, half, 1, 1, norm, c.act),
            )
        else:
            self.branch1 = None
        self.branch2 = nn.Sequential(
            ConvBNAct(c.cin if c.stride > 1 else half, half, 1, 1, norm, c.act),
            depthwise(half, c.kernel, c.stride, norm),
            ConvBNAct(half, half, 1, 1, norm, c.act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            keep, work = x.chunk(2, dim=1)
            out = torch.cat([keep, self.branch2(work)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)
