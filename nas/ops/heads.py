"""Units around the stages: the stem's max-pool, global pooling and the classifier."""
from __future__ import annotations

import torch
from torch import nn

from nas.ops._base import Op
from nas.ops._config import BlockConfig
from nas.ops._layers import make_act
from nas.ops._registry import register


@register
class MaxPool(Op):
    """The 3x3 stride-2 max-pool after a ShuffleNet stem."""

    name = "max_pool"
    stage_op = False
    key_fields = frozenset({"stride", "kernel"})

    def __init__(self, kernel: int, stride: int, norm: dict) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel, stride, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


@register
class GlobalPool(Op):
    """To (N, C): adaptive average pooling ('avg') or a spatial mean ('mean')."""

    name = "global_pool"
    stage_op = False
    key_fields = frozenset({"pool"})

    @classmethod
    def out_shape(cls, config: BlockConfig, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return (config.cout, 1, 1)

    def __init__(self, pool: str, norm: dict) -> None:
        super().__init__()
        self.use_mean = pool == "mean"
        self.avgpool = None if self.use_mean else nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.avgpool is not None:
            return torch.flatten(self.avgpool(x), 1)
        return x.mean([2, 3])


@register
class Classifier(Op):
    """[Linear to `hidden` + act, when hidden > 0] -> [Dropout, when > 0] -> Linear to the classes."""

    name = "classifier"
    stage_op = False
    key_fields = frozenset({"hidden", "act", "dropout", "bias"})

    @classmethod
    def out_shape(cls, config: BlockConfig, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return (config.cout, 1, 1)

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
        # Flatten so the unit also runs alone on its (C, 1, 1) key shape (costing, latency tables).
        return self.classifier(torch.flatten(x, 1))
