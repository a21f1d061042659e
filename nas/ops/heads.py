"""Units around the stages: the stem's max-pool, global pooling and the classifier."""
from __future__ import annotations

import torch
from torch import nn

from nas.ops._base import Op
from nas.ops._config import BlockConfig, BlockKey, config_text
from nas.ops._fields import Field, declare_field
from nas.ops._layers import conv_bn, make_act
from nas.ops._registry import register

# MobileNetV4's head: after pooling, a 1x1 conv without bias + BN + act instead of a Linear + act.
declare_field(Field(name="hidden_norm", default=False, key_short="hnorm"))


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


class PooledConvBN(nn.Module):
    """1x1 conv (no bias) + BN + act on pooled (N, C) features, giving (N, C') again."""

    def __init__(self, cin: int, cout: int, act: str, norm: dict) -> None:
        super().__init__()
        self.conv = conv_bn(cin, cout, 1, 1, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.conv(x.reshape(x.shape[0], x.shape[1], 1, 1)), 1)


@register
class Classifier(Op):
    """[hidden layer, when hidden > 0] -> [Dropout, when > 0] -> Linear to the classes.

    The hidden layer is a Linear + act (MobileNetV3), or with `hidden_norm` a 1x1 conv without
    bias + BN + act on the pooled features (MobileNetV4's post-pooling conv).
    """

    name = "classifier"
    stage_op = False
    key_fields = frozenset({"hidden", "act", "dropout", "bias", "hidden_norm"})

    @classmethod
    def out_shape(cls, config: BlockConfig, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return (config.cout, 1, 1)

    @classmethod
    def _used(cls, config: BlockConfig) -> frozenset[str]:
        # keys of heads without the norm keep the text they had before the field existed (old tables match)
        return cls.key_fields if config.hidden_norm else cls.key_fields - {"hidden_norm"}

    @classmethod
    def key_text(cls, key: BlockKey) -> str:
        return key.text(cls._used(key.config))

    @classmethod
    def config_text(cls, config: BlockConfig) -> str:
        return config_text(config, cls._used(config))

    def __init__(self, cin: int, hidden: int, act: str, dropout: float, bias: bool, num_classes: int,
                 norm: dict, hidden_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden and hidden_norm:
            layers.append(PooledConvBN(cin, hidden, act, norm))
        elif hidden:
            layers.append(nn.Linear(cin, hidden))
            if act != "none":
                layers.append(make_act(act))
        if dropout > 0:
            # not in place: a ReLU before it keeps its output for the backward pass
            layers.append(nn.Dropout(p=dropout))
        layers.append(nn.Linear(hidden or cin, num_classes, bias=bias))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flatten so the unit also runs alone on its (C, 1, 1) key shape (costing, latency tables).
        return self.classifier(torch.flatten(x, 1))
