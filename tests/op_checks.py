"""Checks several operator tests share."""
from __future__ import annotations

import torch
from torch import nn


def assert_adds_input_only_if_residual(block: nn.Module, residual: bool, channels: int = 16) -> None:
    """Zero the block's last BatchNorm, so its own path outputs zeros: a residual block then returns its
    input exactly, any other block zeros."""
    assert block.use_residual is residual
    last_bn = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)
    x = torch.randn(1, channels, 6, 6)
    with torch.no_grad():
        y = block.eval()(x)
    if residual:
        torch.testing.assert_close(y, x)
    else:
        assert torch.count_nonzero(y) == 0
