"""grad_norm, snip and jacob_cov as in Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS".

Each takes one batch (a seeded N(0, 1) batch of 16 when none is given) and,
for grad_norm and snip, labels (seeded uniform random labels when none are
given).  The network keeps its own weights and runs in train mode, BatchNorm
on batch statistics, as the paper's code does; dropout is off.  The loss is
cross-entropy averaged over the batch.  Gradients are taken w.r.t. the
weights of conv and linear layers only, as the paper's code scores them.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from proxies.zero_cost.common import (
    DTYPE, check_input_shape, check_seed, device_of, finite, generator, inputs, labels_for, safe_log,
    weighted_layers, working_copy,
)

#: jacob_cov's regulariser k in -Σ[log(λ + k) + 1/(λ + k)] (the paper's 1e-5).
JACOB_COV_K = 1e-5


def _weight_grads(
    name: str,
    module: nn.Module,
    input_shape: Sequence[int],
    batch: torch.Tensor | None,
    labels: torch.Tensor | None,
    seed: int,
    batch_size: int | None,
    num_classes: int | None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, ∂L/∂weight) for every conv and linear layer, L the mean cross-entropy on one batch."""
    shape = check_input_shape(name, input_shape)
    gen = generator(check_seed(name, seed))
    work = working_copy(module, train=True)
    device = device_of(work)
    x = inputs(name, shape, batch, batch_size, gen, device)
    weights = [layer.weight for layer in weighted_layers(name, work)]
    logits = work(x)
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}: the module's output has shape {tuple(logits.shape)}; cross-entropy needs "
            f"(batch, classes) logits, i.e. ({x.shape[0]}, num_classes)"
        )
    classes = logits.shape[1]
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"{name}: num_classes={num_classes} but the module outputs {classes} logits")
    y = labels_for(name, labels, x.shape[0], classes, gen, device)
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w.detach(), g) for w, g in zip(weights, grads) if g is not None]


def grad_norm(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    num_classes: int | None = None,
) -> float:
    """log Σ_layers ‖∂L/∂W‖₂ over conv and linear weights W. Higher is better.

    The paper's value is the sum itself; we return its natural log (monotone,
    so rankings are unchanged) because the sum spans many orders of magnitude
    across depths.  A zero gradient everywhere maps to `LOG_FLOOR`.
    """
    pairs = _weight_grads("grad_norm", module, input_shape, batch, labels, seed, batch_size, num_classes)
    return safe_log("grad_norm", sum(float(torch.linalg.vector_norm(g)) for _, g in pairs))


def snip(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    num_classes: int | None = None,
) -> float:
    """log Σ |W ⊙ ∂L/∂W| over conv and linear weights W (SNIP's connection saliency). Higher is better.

    The paper's value is the sum; we return its natural log (monotone).
    A zero sum maps to `LOG_FLOOR`.
    """
    pairs = _weight_grads("snip", module, input_shape, batch, labels, seed, batch_size, num_classes)
    return safe_log("snip", sum(float((w * g).abs().sum()) for w, g in pairs))


def jacob_cov(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> float:
    """−Σ_i [log(λ_i + k) + 1/(λ_i + k)], λ the eigenvalues of the batch's Jacobian correlation matrix.

    Row i of the Jacobian is ∂(Σ outputs)/∂x_i, flattened (the paper's
    ``y.backward(ones)``); the N x N matrix is their Pearson correlation and
    k = 1e-5.  Not log-transformed: it is already a sum of logs and bounded
    above by −N (all λ = 1, uncorrelated rows).  Higher is better (less
    correlated).  A row with zero variance (an input the output ignores)
    correlates with nothing and has correlation 0 with itself, so it adds an
    eigenvalue 0 and a penalty of about 1/k instead of the paper's NaN.
    """
    shape = check_input_shape("jacob_cov", input_shape)
    gen = generator(check_seed("jacob_cov", seed))
    work = working_copy(module, train=True)
    x = inputs("jacob_cov", shape, batch, batch_size, gen, device_of(work)).requires_grad_(True)
    # Feed a non-leaf clone: an in-place first layer may not write into a leaf that requires grad.
    (jacobian,) = torch.autograd.grad(work(x.clone()).sum(), x)
    rows = jacobian.detach().reshape(x.shape[0], -1).to(DTYPE).cpu()
    centred = rows - rows.mean(dim=1, keepdim=True)
    norms = torch.linalg.vector_norm(centred, dim=1, keepdim=True)
    unit = torch.where(norms > 0, centred / norms.clamp_min(torch.finfo(DTYPE).tiny), torch.zeros_like(centred))
    corr = unit @ unit.T
    eigenvalues = torch.linalg.eigvalsh(corr).clamp_min(0.0)  # PSD; clamp rounding below 0
    shifted = eigenvalues + JACOB_COV_K
    return finite("jacob_cov", -(torch.log(shifted) + 1.0 / shifted).sum())
