"""What the search maximises besides speed: the `--objective` names, registered in one table.

`macs` and `params` are the crude stand-ins (bigger is usually more accurate),
read from the metrics every trial computes anyway; every zero-cost proxy of
`proxies.zero_cost` is a name too, `proxy` is the default proxy, `trained`
trains each candidate, `supernet` scores it as a subnet of a trained
supernet, and proxies joined by '+' form a z-scored ensemble.
A new objective is one `register_objective` line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nas.search.objective_registry import (OBJECTIVES, Metrics, ObjectiveError, ObjectiveOptions, Scorer,
                                           register_objective)
from nas.search.proxy_objectives import DEFAULT_PROXY, ProxyObjective, proxy_factory
from nas.search.supernet_objective import make_supernet
from nas.search.trained import make_trained
from nas.space import SearchSpace
from proxies.zero_cost import PROXIES

__all__ = ["DEFAULT_PROXY", "OBJECTIVES", "Metrics", "Objective", "ObjectiveError", "Scorer", "get_objective",
           "objective_names", "register_objective"]


@dataclass(frozen=True)
class Objective:
    """An objective that is a plain function of the space, the architecture and the trial's metrics."""

    name: str
    help: str
    score: Callable[[SearchSpace, Mapping[str, Any], Metrics], float]


def _register_counted(objective: Objective) -> None:
    # Read from the trial's cached counts; in an ensemble the zero-cost proxy of the same name stands in.
    register_objective(objective.name, objective.help, lambda options: objective, proxy=objective.name)


_register_counted(Objective("macs", "multiply-accumulates of conv and linear layers (fvcore), more is better",
                            lambda space, arch, m: float(m.macs)))
_register_counted(Objective("params", "parameter count, more is better", lambda space, arch, m: float(m.params)))
for _name in PROXIES:
    if _name not in OBJECTIVES:
        register_objective(_name, f"zero-cost proxy {_name}, higher is better", proxy_factory([_name]), proxy=_name)
register_objective("proxy", f"the default zero-cost proxy ({DEFAULT_PROXY})", proxy_factory([DEFAULT_PROXY]))
register_objective("trained", "held-out top-1 after training (needs --data and --epochs)", make_trained)
register_objective("supernet", "held-out top-1 (or --supernet-metric log_loss) of the candidate as a subnet of a "
                   "trained supernet, batch norms recalibrated (needs --supernet)", make_supernet)


def objective_names() -> list[str]:
    """Every name `--objective` takes."""
    return sorted(OBJECTIVES)


def get_objective(name: str, *, seed: int = 0, data: str | None = None, epochs: int | None = None,
                  supernet: str | None = None, supernet_metric: str | None = None) -> Scorer:
    """A registered objective (`macs`, `zen`, `trained`, `supernet`, ...; `trained` needs `data` and
    `epochs`, `supernet` a checkpoint), or an ensemble of registered proxies joined by '+' (`zen+naswot`)."""
    options = ObjectiveOptions(seed=seed, data=data, epochs=epochs, supernet=supernet,
                               supernet_metric=supernet_metric)
    if name in OBJECTIVES:
        return OBJECTIVES[name].make(options)
    parts = name.split("+")
    proxies = [OBJECTIVES[p].proxy if p in OBJECTIVES else None for p in parts]
    if len(parts) > 1 and all(proxies) and len(set(parts)) == len(parts):
        return ProxyObjective([str(p) for p in proxies], seed=seed)
    raise ObjectiveError(f"--objective: unknown objective {name!r}; choose one of {', '.join(objective_names())}, "
                         f"or proxies joined by '+' (e.g. zen+naswot)")
