"""NASWOT (Mellor et al. 2021, "Neural Architecture Search without Training"): forward only.

Each ReLU-family activation splits its input space into linear regions; a
sample's binary code records, for every unit, whether its pre-activation is
positive.  A network whose codes tell the samples of a batch apart (far in
Hamming distance) scores higher.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from proxies.zero_cost.common import (
    DTYPE, check_input_shape, check_seed, device_of, finite, generator, inputs, working_copy,
)

#: Activations whose units are coded by "pre-activation > 0": ReLU and its
#: piecewise or smooth relatives (each is ~0 below 0 and ~identity above).
#: Gates (sigmoid, hardsigmoid) are not coded: SE blocks scale, they do not cut.
CODED_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Hardswish, nn.Mish, nn.Softplus,
)


def naswot(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> float:
    """log det(K + I) with K = C Cᵀ + (1 − C)(1 − C)ᵀ, in float64. Higher is better.

    C is the N x N_A binary matrix of the batch's codes: for every unit of every
    module in `CODED_ACTIVATIONS`, 1 where its input is > 0.  K_ij counts the
    units on which samples i and j agree (N_A minus their Hamming distance).
    The network keeps its own weights and runs in train mode (BatchNorm on
    batch statistics), as in Mellor et al.  Without a batch, a seeded N(0, 1)
    batch of `batch_size` (default 16) is drawn.

    The unit ridge I is our addition.  K is a positive semi-definite integer
    matrix, singular when two samples share a code (identical inputs give
    log(1 + N · N_A) instead of −inf), and float64 rounding of a singular K
    is ~1e-10 of a unit, which the ridge absorbs.  For distinct codes K's
    eigenvalues are of order N_A / 2, so the ridge moves the paper's score by
    about N · 2 / N_A.
    """
    shape = check_input_shape("naswot", input_shape)
    gen = generator(check_seed("naswot", seed))
    work = working_copy(module, train=True)
    x = inputs("naswot", shape, batch, batch_size, gen, device_of(work))
    n = x.shape[0]
    activations = [m for m in work.modules() if isinstance(m, CODED_ACTIVATIONS)]
    if not activations:
        allowed = ", ".join(t.__name__ for t in CODED_ACTIVATIONS)
        raise ValueError(f"naswot: the module has no activation modules to code (one of {allowed})")
    kernel = torch.zeros((n, n), dtype=DTYPE)
    units = [0]

    def record_codes(act: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        # A pre-hook sees the input before an in-place activation overwrites it.
        codes = (args[0].detach().reshape(n, -1) > 0).to(DTYPE)
        ones = codes.sum(dim=1)  # units on in each sample
        both_on = codes @ codes.T
        # (1 - c)(1 - c)ᵀ = N_A - r_i - r_j + c cᵀ, so K = 2 c cᵀ - r_i - r_j + N_A.
        kernel.add_((2 * both_on - ones[:, None] - ones[None, :] + codes.shape[1]).cpu())
        units[0] += codes.shape[1]

    handles = [act.register_forward_pre_hook(record_codes) for act in activations]
    try:
        with torch.no_grad():
            work(x)
    finally:
        for handle in handles:
            handle.remove()
    if units[0] == 0:
        raise ValueError("naswot: no activation module ran in the forward pass; nothing to code")
    sign, logdet = torch.linalg.slogdet(kernel + torch.eye(n, dtype=DTYPE))
    if sign <= 0:  # K + I is positive definite; a sign flip means the codes were not recorded faithfully
        raise FloatingPointError(f"naswot: K + I has determinant sign {float(sign)}; expected a positive determinant")
    return finite("naswot", logdet)
