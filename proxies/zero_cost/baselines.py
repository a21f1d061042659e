"""Size baselines for the zero-cost proxies: MACs and parameter count (bigger predicts more accurate).

Every learned proxy should be compared with these: on many search spaces
plain size ranks networks about as well as the proxies do.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from proxies.flops import count_module, count_params
from proxies.zero_cost.common import check_input_shape


def macs(module: nn.Module, input_shape: Sequence[int]) -> float:
    """Conv and linear multiply-accumulates for one sample of `input_shape` (`proxies.flops`)."""
    shape = check_input_shape("macs", input_shape)
    return float(count_module(module, (1, *shape)).macs)


def params(module: nn.Module, input_shape: Sequence[int]) -> float:
    """Number of parameter elements; `input_shape` is checked but does not matter."""
    check_input_shape("params", input_shape)
    return float(count_params(module))
