"""Zen-score (Lin et al. 2021, Zen-NAS): expressivity of the pre-pooling feature map, forward only.

For each repeat: re-initialise the network as Zen-NAS does (conv and linear
weights N(0, 1), biases 0, BatchNorm/GroupNorm weight 1 and bias 0), draw
x ~ N(0, 1) and ε ~ N(0, 1), and run the feature extractor f on x and on
x + α·ε with BatchNorm in train mode (batch statistics).  The repeat's score is

    log( mean over the batch of Σ_{c,h,w} |f(x) − f(x + α·ε)| )  +  Σ_BN log sqrt(mean_c σ²_c)

where σ²_c is the unbiased batch variance of channel c at that BN's input in
the forward pass of x: the value ``running_var`` holds after one update with
momentum 1.  (Zen-NAS's code reads ``running_var`` after two momentum-0.1
updates from 1.0, which mixes in the initial value; its paper defines the
term by the batch variance, which is what we use.)  The score is the mean over
repeats.  Higher is better.  The caller's weights are irrelevant by
definition: only the architecture and the seed matter.

The feature extractor is the network up to (not including) its global pool;
see `feature_fn`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from proxies.zero_cost.common import (
    DTYPE, batch_norms, check_input_shape, check_seed, device_of, finite, generator,
    inputs, safe_log, working_copy,
)

#: `features_fn(module, x)` maps a batch to the pre-pooling feature map of `module`.
FeaturesFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]

#: Repeats averaged by default (Zen-NAS's command line defaults to 32; its scores vary
#: by a few hundredths between repeats, far less than between architectures).
DEFAULT_REPEATS = 4

#: Zen-NAS's perturbation scale (``mixup_gamma``).
DEFAULT_ALPHA = 0.01

#: Method names that already return the pre-pooling map: Zen-NAS's and timm's conventions.
_FEATURE_METHODS = ("forward_pre_GAP", "forward_features")


def _is_global_pool(x: torch.Tensor, y: torch.Tensor) -> bool:
    """True when a unit maps `x` to `y` by pooling it away: rank drops (N, C, H, W) -> (N, C),
    or a spatial map larger than 1x1 collapses to 1x1."""
    if y.dim() < x.dim():
        return True
    return x.dim() == 4 and y.dim() == 4 and y.shape[2:] == (1, 1) and tuple(x.shape[2:]) != (1, 1)


def _run_until_pool(units: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for unit in units:
        y = unit(x)
        if _is_global_pool(x, y):
            return x
        x = y
    return x


def _units(part: nn.Module) -> list[nn.Module]:
    return list(part) if isinstance(part, nn.Sequential) else [part]


def feature_fn(module: nn.Module) -> FeaturesFn:
    """The default pre-pooling feature extractor for `module`, by the first rule that applies:

    1. a ``forward_pre_GAP`` (Zen-NAS) or ``forward_features`` (timm) method;
    2. ``stem`` and ``blocks`` attributes (and an optional ``head``), as in
       `nas.builder.Network`: run stem, blocks and head units in order;
    3. an ``nn.Sequential``: run its children in order;
    4. anything else: the module's own output.

    Rules 2 and 3 stop before the first unit that pools the map away (a rank
    drop such as (N, C, H, W) -> (N, C), or H x W > 1 collapsing to 1 x 1), so
    a head conv counts as features and the global pool and classifier do not.
    A network without a pool (an MLP) is used whole.
    """
    for method in _FEATURE_METHODS:
        if callable(getattr(module, method, None)):
            return lambda m, x, method=method: getattr(m, method)(x)
    if isinstance(getattr(module, "stem", None), nn.Module) and isinstance(getattr(module, "blocks", None), nn.Module):
        def network_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
            head = getattr(m, "head", None)
            units = [*_units(m.stem), *_units(m.blocks), *(_units(head) if isinstance(head, nn.Module) else [])]
            return _run_until_pool(units, x)

        return network_features
    if isinstance(module, nn.Sequential):
        return lambda m, x: _run_until_pool(list(m), x)
    return lambda m, x: m(x)


@torch.no_grad()
def _gaussian_init(module: nn.Module, gen: torch.Generator) -> None:
    """Zen-NAS's re-initialisation, drawn from `gen` in module order."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen, dtype=DTYPE))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.fill_(1.0)
            m.bias.zero_()


def zen(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    alpha: float = DEFAULT_ALPHA,
    features_fn: FeaturesFn | None = None,
) -> float:
    """Zen-NAS score averaged over `repeats` seeded draws (see the module docstring). Higher is better.

    `features_fn(module, x)` overrides `feature_fn(module)`; it is called on the
    working copy, never on the caller's module.  Data-free: it draws its own
    Gaussian batch of `batch_size` (default 16).
    """
    shape = check_input_shape("zen", input_shape)
    gen = generator(check_seed("zen", seed))
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"zen: repeats must be a positive int, got {repeats!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"zen: alpha must be a positive finite number, got {alpha!r}")
    features = features_fn if features_fn is not None else feature_fn(module)
    work = working_copy(module, train=True)
    device = device_of(work)
    log_sigmas: list[float] = []
    recording = [False]

    def record_variance(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if recording[0]:
            x = args[0]
            dims = [d for d in range(x.dim()) if d != 1]  # every dim but the channels
            var = x.var(dim=dims, unbiased=True).mean()
            log_sigmas.append(0.5 * safe_log("zen", float(var)))

    handles = [bn.register_forward_pre_hook(record_variance) for bn in batch_norms(work)]
    scores = []
    try:
        with torch.no_grad():
            for _ in range(repeats):
                _gaussian_init(work, gen)
                x = inputs("zen", shape, None, batch_size, gen, device)
                eps = torch.randn(x.shape, generator=gen, dtype=DTYPE).to(device)
                log_sigmas.clear()
                recording[0] = True
                clean = features(work, x)
                recording[0] = False
                perturbed = features(work, x + alpha * eps)
                delta = (clean - perturbed).abs().flatten(1).sum(dim=1).mean()
                scores.append(safe_log("zen", float(delta)) + sum(log_sigmas))
    finally:
        for handle in handles:
            handle.remove()
    return finite("zen", sum(scores) / len(scores))
