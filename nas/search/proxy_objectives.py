"""Accuracy estimates from the built, untrained network: zero-cost proxies and their ensembles.

`--objective zen` scores each candidate with one proxy; `--objective
zen+naswot` averages proxies after putting them on one scale: each is
z-scored with the mean and spread it has over a fixed calibration sample of
the space (seeded), so a candidate's value never depends on which trials came
before it and every trial of a study stays comparable. The search caches
values per architecture, so a repeated candidate is not scored twice.
"""
from __future__ import annotations

import statistics
from typing import Any, Callable, Mapping

import torch

from nas.builder import build
from nas.search.objective_registry import Metrics, ObjectiveOptions
from nas.space import SearchSpace, plan, sample

PROXY_BATCH = 8  # inputs per proxy evaluation in the search: enough for naswot's kernel, cheap at 224 px
CALIBRATION = 12  # random architectures that fix each proxy's scale in an ensemble
# The zero-cost proxy `--objective proxy` stands for: the one that ranked trained accuracy best in
# benchmarks/proxy_correlation.py (see the README's table).
DEFAULT_PROXY = "naswot"


def seeded_model(space: SearchSpace, arch: Mapping[str, Any], seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):  # same weights for the same seed, global RNG untouched
        torch.manual_seed(seed)
        return build(space, arch).eval()


class ProxyObjective:
    """One zero-cost proxy, or an equal-weight ensemble of several (`zen+naswot`)."""

    def __init__(self, names: list[str], *, seed: int = 0, batch_size: int = PROXY_BATCH,
                 calibration: int = CALIBRATION) -> None:
        self.names, self.seed, self.batch_size, self.calibration = names, seed, batch_size, calibration
        self.name = "+".join(names)
        self.help = f"zero-cost proxy {self.name}, higher is better"
        self._scale: dict[str, tuple[float, float]] | None = None

    def raw(self, space: SearchSpace, arch: Mapping[str, Any]) -> dict[str, float]:
        """Each proxy's own value for `arch` at the search's resolution."""
        from proxies.zero_cost import get_proxy, score

        model = seeded_model(space, arch, self.seed)
        shape = plan(space, arch).input_shape
        out = {}
        for n in self.names:
            options = {"batch_size": self.batch_size} if "batch_size" in get_proxy(n).options else {}
            out[n] = score(n, model, shape, seed=self.seed, **options)
        return out

    def _scales(self, space: SearchSpace) -> dict[str, tuple[float, float]]:
        if self._scale is None:
            values = [self.raw(space, sample(space, self.seed + 7919 * (i + 1))) for i in range(self.calibration)]
            self._scale = {}
            for n in self.names:
                column = [v[n] for v in values]
                self._scale[n] = (statistics.mean(column), statistics.pstdev(column) or 1.0)
        return self._scale

    def score(self, space: SearchSpace, arch: Mapping[str, Any], metrics: Metrics) -> float:
        values = self.raw(space, arch)
        if len(self.names) == 1:
            return values[self.names[0]]
        scales = self._scales(space)
        return sum((values[n] - scales[n][0]) / scales[n][1] for n in self.names) / len(self.names)


def proxy_factory(names: list[str]) -> Callable[[ObjectiveOptions], ProxyObjective]:
    """The registry's factory for one proxy or an ensemble of several."""
    return lambda options: ProxyObjective(list(names), seed=options.seed)
