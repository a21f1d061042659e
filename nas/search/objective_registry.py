"""What an objective is, and the registry of `--objective` names.

An objective is anything with a `name`, a line of `help` and `score(space,
arch, metrics) -> float` (higher is better). Each name registers a factory
that builds it from the options the command line gives (seed, training data,
epochs), so `get_objective` treats `macs`, a zero-cost proxy and `trained`
alike. A name may also name the zero-cost proxy that stands for it in an
ensemble (`zen+naswot`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from nas.errors import NasError
from nas.space import SearchSpace


@dataclass(frozen=True)
class Metrics:
    """What every trial records: cached fvcore counts and the table's predicted latency."""

    macs: int
    params: int
    latency_ms: float


class Scorer(Protocol):
    """What the search needs of an objective."""

    name: str  # recorded in the study: resuming with another objective is refused
    help: str

    def score(self, space: SearchSpace, arch: Mapping[str, Any], metrics: Metrics) -> float: ...

    # Optional: `check(space)`, called before the study opens, refuses a space the objective cannot score
    # (e.g. a supernet trained for another); `save_weights(space, arch, path)` writes the winner's weights
    # (the report's best_weights.pt).


@dataclass(frozen=True)
class ObjectiveOptions:
    """The command line's options an objective may need."""

    seed: int = 0
    data: str | None = None  # `trained`: digits or an image folder; `supernet`: its held-out images
    epochs: int | None = None
    supernet: str | None = None  # `supernet`: the checkpoint
    supernet_metric: str | None = None  # `supernet`: top1 or log_loss


@dataclass(frozen=True)
class ObjectiveEntry:
    """One `--objective` name: help, a factory, and the zero-cost proxy it joins an ensemble as (if any)."""

    name: str
    help: str
    make: Callable[[ObjectiveOptions], Scorer]
    proxy: str | None = None


class ObjectiveError(NasError, ValueError):
    """An unknown objective name, or one without the options it needs."""


OBJECTIVES: dict[str, ObjectiveEntry] = {}


def register_objective(name: str, help: str, make: Callable[[ObjectiveOptions], Scorer], *,
                       proxy: str | None = None) -> ObjectiveEntry:
    """Add an `--objective` name; registering a name twice is an error."""
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered")
    OBJECTIVES[name] = ObjectiveEntry(name, help, make, proxy)
    return OBJECTIVES[name]
