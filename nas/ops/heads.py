"""Units around the stages: the stem's max-pool, global pooling and the classifier."""
from __future__ import annotations

import torch
from torch import nn

from nas.ops.base import Op
from nas.ops.config import BlockConfig, NormSpec
from nas.ops.layers import Linear, activation
from nas.ops.registry import register


@register
class MaxPool(Op):
    """3x3 stride-2 max-pool after a ShuffleNet stem."""

    name = "max_pool"
    stage_op = False
    key_fields = frozenset({"stride", "kernel"})

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        self.pool = nn.MaxPool2d(config.kernel, config.stride, config.kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


@register
class GlobalPool(Op):
    """Global average pool to (N, C): adaptive pooling ("avg") or a spatial mean ("mean")."""

    name = "global_pool"
    stage_op = False
    key_fields = frozenset({"pool"})

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        self.use_mean = config.pool == "mean"
        self.avgpool = None if self.use_mean else nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_mean:
            return x.mean([2, 3])
        return torch.flatten(self.avgpool(x), 1)


@register
class Classifier(Op):
    """[Linear to `hidden` + act] -> Dropout -> Linear to the classes."""

    name = "classifier"
    stage_op = False
    key_fields = frozenset({"hidden", "act", "dropout", "bias"})

    def __init__(self, config: BlockConfig, norm: NormSpec) -> None:
        super().__init__(config, norm)
        c = config
        layers: list[nn.Module] = []
        features = c.cin
        if c.hidden:
            layers.append(Linear(c.cin, c.hidden))
            act = activation(c.act)
            if act is not None:
                layers.append(act)
            features = c.hidden
        if c.dropout > 0:
            layers.append(nn.Dropout(p=c.dropout, inplace=True))
        layers.append(Linear(features, c.cout, bias=c.bias))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flatten so the unit also runs alone on its (C, 1, 1) key shape (costing, latency tables).
        return self.classifier(torch.flatten(x, 1))
