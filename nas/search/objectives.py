"""What the search maximises besides speed: an accuracy stand-in named by `--objective`.

`macs` and `params` are the crude stand-ins (bigger is usually more accurate);
an objective is a plain function of the space, the architecture and the
metrics every trial computes anyway, so new ones register in one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nas.errors import NasError
from nas.space import SearchSpace


@dataclass(frozen=True)
class Metrics:
    """What every trial records: cached fvcore counts and the table's predicted latency."""

    macs: int
    params: int
    latency_ms: float


@dataclass(frozen=True)
class Objective:
    name: str
    help: str
    score: Callable[[SearchSpace, Mapping[str, Any], Metrics], float]


class ObjectiveError(NasError, ValueError):
    """An unknown objective name."""


OBJECTIVES: dict[str, Objective] = {}

# The zero-cost proxy `--objective proxy` stands for: the one that ranked trained accuracy best in
# benchmarks/proxy_correlation.py (see the README's table).
DEFAULT_PROXY = "naswot"


def register(objective: Objective) -> Objective:
    if objective.name in OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is already registered")
    OBJECTIVES[objective.name] = objective
    return objective


register(Objective("macs", "multiply-accumulates of conv and linear layers (fvcore), more is better",
                   lambda space, arch, m: float(m.macs)))
register(Objective("params", "parameter count, more is better", lambda space, arch, m: float(m.params)))


def objective_names() -> list[str]:
    """Every name `--objective` takes: the cheap stand-ins and the zero-cost proxies."""
    from proxies.zero_cost import PROXIES

    return sorted(set(OBJECTIVES) | set(PROXIES) | {"proxy", "trained"})


def get_objective(name: str, *, seed: int = 0, data: str | None = None, epochs: int | None = None) -> Any:
    """`macs`, `params`, a zero-cost proxy (`zen`), an ensemble of proxies (`zen+naswot`), or `trained`
    (needs `data` and `epochs`)."""
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    if name == "proxy":
        name = DEFAULT_PROXY
    if name == "trained":
        if data is None or not epochs or epochs < 1:
            raise ObjectiveError("--objective trained needs --data digits|DIR and --epochs N (N >= 1)")
        from nas.search.proxy_objectives import TrainedObjective

        return TrainedObjective(str(data), int(epochs), seed=seed)
    from proxies.zero_cost import PROXIES

    parts = name.split("+")
    if name and all(p in PROXIES for p in parts) and len(set(parts)) == len(parts):
        from nas.search.proxy_objectives import ProxyObjective

        return ProxyObjective(parts, seed=seed)
    raise ObjectiveError(f"--objective: unknown objective {name!r}; choose one of {', '.join(objective_names())}, "
                         f"or proxies joined by '+' (e.g. zen+naswot)")
