"""Zero-cost accuracy proxies: score an untrained network from at most one batch.

Sign convention: for every proxy, **higher means predicted more accurate**.

=========  ==========================================================  ====================
name       score                                                       needs
=========  ==========================================================  ====================
synflow    log Σ|θ ⊙ ∂R/∂θ|, R = 1ᵀf(1) on |θ|, BN removed               nothing (data-free)
zen        log E‖f(x) − f(x + αε)‖₁ + Σ_BN log σ̄, Gaussian re-init       nothing (data-free)
naswot     log det(K + I), K from ReLU-family activation codes          a batch
grad_norm  log Σ_layers ‖∂L/∂W‖₂ (L: cross-entropy)                    a batch and labels
snip       log Σ|W ⊙ ∂L/∂W|                                            a batch and labels
jacob_cov  −Σ[log(λ + k) + 1/(λ + k)], λ: input-Jacobian correlations    a batch
macs       conv + linear multiply-accumulates                         nothing
params     parameter count                                            nothing
=========  ==========================================================  ====================

Where no batch (or no labels) is given, a seeded N(0, 1) batch of 16 (and
seeded uniform labels) is drawn.  Each function's docstring gives the exact
definition.  All of them:

* work on a float64 deep copy, so the caller's module (weights,
  ``requires_grad``, train/eval flags, BatchNorm running statistics, grads) is
  never changed;
* draw randomness only from a private ``torch.Generator`` seeded with `seed`:
  the same seed gives the same float, and torch's global RNG is untouched;
* return a finite float, or raise ``FloatingPointError`` naming the proxy when
  a network overflows even float64.  Scores whose magnitudes grow
  exponentially with depth are logs (synflow, grad_norm, snip).

A leaf module: torch, and ``proxies.flops`` for the MACs baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from proxies.zero_cost.baselines import macs, params
from proxies.zero_cost.common import DEFAULT_BATCH_SIZE, LOG_FLOOR
from proxies.zero_cost.gradient_scores import grad_norm, jacob_cov, snip
from proxies.zero_cost.naswot_score import naswot
from proxies.zero_cost.synflow_score import synflow
from proxies.zero_cost.zen_score import feature_fn, zen

__all__ = [
    "DEFAULT_BATCH_SIZE", "LOG_FLOOR", "PROXIES", "Proxy", "UnknownProxyError", "feature_fn", "get_proxy",
    "grad_norm", "jacob_cov", "macs", "naswot", "params", "register", "score", "snip", "synflow", "zen",
]

#: The keyword arguments `score` hands to a proxy that accepts them.
_COMMON = ("batch", "labels", "seed", "num_classes")


class UnknownProxyError(ValueError):
    """A proxy name that is not registered."""


@dataclass(frozen=True)
class Proxy:
    """A registered proxy.

    `fn(module, input_shape, **kwargs) -> float` takes, as keywords, the subset
    of ``batch``, ``labels``, ``seed`` and ``num_classes`` named in `accepts`,
    plus the proxy-specific `options` (e.g. zen's ``repeats``).  `uses_batch`
    and `uses_labels` say whether the score depends on the values of a given
    batch or labels; a proxy that does not use them ignores them.
    """

    name: str
    fn: Callable[..., float]
    uses_batch: bool
    uses_labels: bool
    accepts: frozenset[str]
    options: frozenset[str] = frozenset()

    @property
    def needs_data(self) -> bool:
        """True if the score depends on a batch of inputs (seeded Gaussian when none is given)."""
        return self.uses_batch or self.uses_labels


PROXIES: dict[str, Proxy] = {}


def register(proxy: Proxy) -> Proxy:
    """Add `proxy` to `PROXIES`; registering a name twice is an error."""
    if proxy.name in PROXIES:
        raise ValueError(f"zero-cost proxy {proxy.name!r} is already registered")
    unknown = proxy.accepts - set(_COMMON)
    if unknown:
        raise ValueError(f"{proxy.name}: accepts may only name {', '.join(_COMMON)}; got {sorted(unknown)}")
    PROXIES[proxy.name] = proxy
    return proxy


def get_proxy(name: str) -> Proxy:
    """The registered proxy `name`, or `UnknownProxyError` listing the allowed names."""
    try:
        return PROXIES[name]
    except (KeyError, TypeError):
        raise UnknownProxyError(
            f"unknown zero-cost proxy {name!r}; allowed: {', '.join(sorted(PROXIES))}"
        ) from None


def score(
    name: str,
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    **options: Any,
) -> float:
    """Score `module` with proxy `name` for inputs of `input_shape` (one sample, e.g. (3, 224, 224)).

    `batch` is (N, *input_shape); `labels` are N ints in [0, num_classes)
    (`num_classes` defaults to the module's output width).  `options` go to the
    proxy: ``batch_size`` for every proxy that draws inputs, and zen's
    ``repeats``, ``alpha`` and ``features_fn``.  Higher is better.
    """
    proxy = get_proxy(name)
    unknown = sorted(set(options) - proxy.options)
    if unknown:
        allowed = ", ".join(sorted(proxy.options)) or "none"
        raise ValueError(f"{name}: unknown option {', '.join(map(repr, unknown))}; allowed: {allowed}")
    given = {"batch": batch, "labels": labels, "seed": seed, "num_classes": num_classes}
    kwargs = {key: value for key, value in given.items() if key in proxy.accepts}
    return float(proxy.fn(module, input_shape, **kwargs, **options))


_DATA = frozenset({"batch", "seed"})
_LABELLED = frozenset({"batch", "labels", "seed", "num_classes"})
for _proxy in (
    Proxy("synflow", synflow, uses_batch=False, uses_labels=False, accepts=frozenset()),
    Proxy("zen", zen, uses_batch=False, uses_labels=False, accepts=frozenset({"seed"}),
          options=frozenset({"batch_size", "repeats", "alpha", "features_fn"})),
    Proxy("naswot", naswot, uses_batch=True, uses_labels=False, accepts=_DATA, options=frozenset({"batch_size"})),
    Proxy("grad_norm", grad_norm, uses_batch=True, uses_labels=True, accepts=_LABELLED,
          options=frozenset({"batch_size"})),
    Proxy("snip", snip, uses_batch=True, uses_labels=True, accepts=_LABELLED, options=frozenset({"batch_size"})),
    Proxy("jacob_cov", jacob_cov, uses_batch=True, uses_labels=False, accepts=_DATA,
          options=frozenset({"batch_size"})),
    Proxy("macs", macs, uses_batch=False, uses_labels=False, accepts=frozenset()),
    Proxy("params", params, uses_batch=False, uses_labels=False, accepts=frozenset()),
):
    register(_proxy)
del _proxy
