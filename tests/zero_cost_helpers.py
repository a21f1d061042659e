"""Tiny networks and seeded data that the zero-cost proxy tests share."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

SHAPE = (3, 8, 8)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build with torch's default init under `seed`, without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def conv_net(depth: int = 2, width: int = 8, act: type[nn.Module] = nn.ReLU, bn: bool = True,
             classes: int = 10) -> nn.Sequential:
    """depth x (3x3 conv [+ BN] + act), global average pool, linear classifier."""
    layers: list[nn.Module] = []
    cin = SHAPE[0]
    for _ in range(depth):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), *([nn.BatchNorm2d(width)] if bn else []), act()]
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    return nn.Sequential(*layers)


def gaussian(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)
