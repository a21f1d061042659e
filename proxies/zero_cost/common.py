"""Shared plumbing for the zero-cost proxies: working copies, seeded inputs and labels, safe logs.

Why: every proxy must leave the caller's module and torch's global RNG exactly
as they were, give the same float for the same seed, and stay finite on deep
networks.  Doing that once here keeps each proxy a few lines of its formula.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: Batch size of the seeded Gaussian batch drawn when no batch is given.
DEFAULT_BATCH_SIZE = 16

#: Every proxy computes in double precision: deep nets overflow float32 long before float64.
DTYPE = torch.float64

#: What a zero sum maps to in log space: log of the smallest normal double (about -708.4),
#: below the log of any positive double a real network produces.
LOG_FLOOR = math.log(sys.float_info.min)

#: Layers whose ``weight`` the gradient and synflow proxies score (as in Abdelfattah et al.:
#: convolutions and linear layers; BatchNorm affine parameters are not scored).
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
)

_DROPOUT: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)


def check_input_shape(name: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """`input_shape` as a tuple of positive ints (one sample, no batch dimension)."""
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"{name}: input_shape must be positive ints such as (3, 32, 32), got {input_shape!r}")
    return shape


def check_seed(name: str, seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{name}: seed must be a non-negative int, got {seed!r}")
    return seed


def generator(seed: int) -> torch.Generator:
    """A private CPU generator: draws from it never touch torch's global RNG state."""
    return torch.Generator().manual_seed(seed)


def device_of(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def working_copy(module: nn.Module, *, train: bool = True) -> nn.Module:
    """A float64 deep copy to measure, so the caller's module is never touched.

    With `train` (the papers' setting), BatchNorm layers use batch statistics;
    dropout is always off, so scores are deterministic and never draw from the
    global RNG.  Every parameter requires grad in the copy.
    """
    work = copy.deepcopy(module).to(DTYPE)
    work.train(train)
    for m in work.modules():
        if isinstance(m, _DROPOUT):
            m.eval()
    work.requires_grad_(True)
    return work


def weighted_layers(name: str, module: nn.Module) -> list[nn.Module]:
    """The conv and linear layers of `module`; an error if it has none (a score of nothing is not 0)."""
    layers = [m for m in module.modules() if isinstance(m, WEIGHTED_LAYERS)]
    if not layers:
        allowed = ", ".join(t.__name__ for t in WEIGHTED_LAYERS)
        raise ValueError(f"{name}: the module has no layers with weights to score (one of {allowed})")
    return layers


def batch_norms(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def inputs(
    name: str,
    input_shape: tuple[int, ...],
    batch: torch.Tensor | None,
    batch_size: int | None,
    gen: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """The given batch checked against `input_shape`, or a seeded N(0, 1) batch; float64 on `device`."""
    if batch is None:
        n = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name}: batch_size must be a positive int, got {batch_size!r}")
        return torch.randn((n, *input_shape), generator=gen, dtype=DTYPE).to(device)
    if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
        raise ValueError(f"{name}: batch must be a floating-point tensor, got {_describe(batch)}")
    if tuple(batch.shape[1:]) != input_shape or batch.shape[0] < 1:
        raise ValueError(
            f"{name}: batch has shape {tuple(batch.shape)}; expected (N, {', '.join(map(str, input_shape))})"
        )
    if batch_size is not None and batch_size != batch.shape[0]:
        raise ValueError(f"{name}: batch_size={batch_size} but the batch holds {batch.shape[0]} samples")
    # A copy: an in-place first layer (ReLU(inplace=True)) must not write into the caller's batch.
    return batch.detach().to(device=device, dtype=DTYPE, copy=True)


def labels_for(
    name: str,
    labels: torch.Tensor | None,
    batch_size: int,
    num_classes: int,
    gen: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """The given labels checked (length, range), or seeded uniform labels in [0, num_classes)."""
    if labels is None:
        return torch.randint(0, num_classes, (batch_size,), generator=gen).to(device)
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name}: labels must be an integer tensor, got {_describe(labels)}")
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"{name}: labels have shape {tuple(labels.shape)}; expected ({batch_size},)")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got values from {low} to {high}")
    return labels.detach().to(device=device, dtype=torch.long)


def safe_log(name: str, value: float) -> float:
    """Natural log of a non-negative sum; 0 maps to LOG_FLOOR, inf or NaN is an error."""
    if not math.isfinite(value) or value < 0:
        raise FloatingPointError(
            f"{name}: the sum is {value!r} even in float64; the network's signal overflowed (too deep or "
            f"badly scaled) so no finite score exists"
        )
    return math.log(value) if value > 0 else LOG_FLOOR


def finite(name: str, value: float) -> float:
    """`value` as a float, or an error naming the proxy if it is inf or NaN."""
    value = float(value)
    if not math.isfinite(value):
        raise FloatingPointError(f"{name}: the score is {value!r}; the network's signal overflowed in float64")
    return value


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
