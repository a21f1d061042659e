"""SynFlow (Tanaka et al. 2020), as scored for NAS by Abdelfattah et al. 2021: data-free.

Why these choices:

* BatchNorm layers are removed (replaced by identity), as the zero-cost NAS
  paper's ``synflow`` does (its ``synflow_bn`` variant keeps them).  With BN
  in the all-ones pass, batch statistics of a single constant sample are
  degenerate and running statistics would make the score depend on training.
* ReLU6 (and any Hardtanh clipping at 0..max) becomes ReLU.  Every value in
  the pass is positive and grows with depth; a clip at 6 would zero the
  gradient of every weight upstream of it, which the papers' ReLU networks
  never meet.  Other activations are kept (hardswish is the identity above 3;
  sigmoid gates saturate at 1 and pass the main path's gradient).
* Everything is float64 and the score is returned as a natural log: R grows
  like the product of the layers' absolute weight sums, about 1e60 for a
  60-layer network, which float32 cannot hold.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from proxies.zero_cost.common import (
    DTYPE, batch_norms, check_input_shape, device_of, safe_log, weighted_layers, working_copy,
)


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Swap every occurrence of submodule `old` (by identity) for `new`."""
    for parent in root.modules():
        for child_name, child in parent.named_children():
            if child is old:
                setattr(parent, child_name, new)


def linearized_copy(module: nn.Module) -> nn.Module:
    """The float64 network synflow differentiates: |parameters|, no BatchNorm, ReLU6 -> ReLU, eval mode."""
    work = working_copy(module, train=False)
    for bn in batch_norms(work):
        _replace(work, bn, nn.Identity())
    for m in list(work.modules()):
        if isinstance(m, nn.Hardtanh) and m.min_val == 0.0:  # nn.ReLU6 is Hardtanh(0, 6)
            _replace(work, m, nn.ReLU())
    with torch.no_grad():
        for tensor in work.state_dict().values():  # parameters and float buffers, as the references do
            if tensor.is_floating_point():
                tensor.abs_()
    return work


def synflow(module: nn.Module, input_shape: Sequence[int]) -> float:
    """log Σ |θ ⊙ ∂R/∂θ| over conv and linear weights θ, where R = 1ᵀ f(1) on |θ|. Higher is better.

    One all-ones input of `input_shape` (batch 1), every parameter replaced by
    its absolute value, BatchNorm removed (see the module docstring).  Data-free
    and deterministic: no seed, and any batch is irrelevant.  For a chain of L
    bias-free linear layers this is exactly log(L · 1ᵀ|W_L|…|W_1|1).
    """
    shape = check_input_shape("synflow", input_shape)
    work = linearized_copy(module)
    weights = [layer.weight for layer in weighted_layers("synflow", work)]
    ones = torch.ones((1, *shape), dtype=DTYPE, device=device_of(work))
    total = work(ones).sum()
    grads = torch.autograd.grad(total, weights, allow_unused=True)
    flow = sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads) if g is not None)
    return safe_log("synflow", flow)
