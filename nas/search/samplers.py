"""`--sampler` names: a registry of seeded Optuna sampler factories.

Every decision is an Optuna categorical under its flat name. Optuna's
`QMCSampler` samples numerical parameters only (it hands categoricals to its
random fallback), so `qmc` here is a small sampler that maps one scrambled
Sobol' point per trial onto the choice lists: a low-discrepancy design over
the categorical space, with the point index taken from the trial number so a
resumed study continues the sequence.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from nas.errors import NasError

# A sampler factory takes the seed, the number of objectives and the trials planned (None: open-ended).
SamplerMaker = Callable[[int | None, int, int | None], BaseSampler]


@dataclass(frozen=True)
class SamplerEntry:
    """One `--sampler` name: a line of help and the factory that builds it."""

    name: str
    help: str
    make: SamplerMaker


# Name -> entry, in the order `--sampler` lists them; `register_sampler` adds to it.
SAMPLERS: dict[str, SamplerEntry] = {}


class SamplerError(NasError, ValueError):
    """An unknown sampler name."""


def register_sampler(name: str, help: str, make: SamplerMaker) -> SamplerEntry:
    """Add a `--sampler` name; registering a name twice is an error."""
    if name in SAMPLERS:
        raise ValueError(f"sampler {name!r} is already registered")
    SAMPLERS[name] = SamplerEntry(name, help, make)
    return SAMPLERS[name]


def make_sampler(name: str, seed: int | None, n_objectives: int, n_trials: int | None = None, *,
                 shared: bool = False) -> BaseSampler:
    """The Optuna sampler for a `--sampler` name. Constraints reach it through `trial.set_constraint`.
    `shared`: several workers ask on one stored study, so TPE (also when `auto` picks it) uses the
    constant liar, which counts the running trials of every worker as poor results and so keeps
    workers from proposing the same point at once."""
    entry = SAMPLERS.get(name)
    if entry is None:
        raise SamplerError(f"--sampler: unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    with warnings.catch_warnings():  # NSGA-III, constant liar: "experimental" in Optuna, a fact for the README
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if shared and (name == "tpe" or (name == "auto" and auto_choice(n_objectives, n_trials) == "tpe")):
            return _tpe(seed, constant_liar=True)
        return entry.make(seed, n_objectives, n_trials)


def sampler_help() -> str:
    """The `--sampler` help line: every registered name, and what `auto` picks."""
    return f"{', '.join(SAMPLERS)} (default auto: {SAMPLERS['auto'].help})"


def sampler_label(name: str, n_objectives: int, n_trials: int | None) -> str:
    """The name a report shows: `auto` says what it picked, e.g. `auto (tpe)`."""
    return name if name != "auto" else f"auto ({auto_choice(n_objectives, n_trials)})"


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class CategoricalQMCSampler(BaseSampler):
    """Scrambled Sobol' points over categorical choice lists (point `n` for trial number `n`)."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._fallback = RandomSampler(seed=seed)
        self._space: dict[str, CategoricalDistribution] | None = None
        self._engine: Any = None

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._space is None:
            for t in study.get_trials(deepcopy=False, states=_FINISHED):
                if t.distributions:
                    self._space = {n: d for n, d in sorted(t.distributions.items())
                                   if isinstance(d, CategoricalDistribution)}
                    break
        return dict(self._space or {})

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        from scipy.stats import qmc

        names = sorted(search_space)
        if self._engine is None or self._engine.d != len(names):
            self._engine = qmc.Sobol(d=len(names), scramble=True, seed=self._seed)
        self._engine.reset()
        self._engine.fast_forward(trial.number)
        point = self._engine.random(1)[0]
        out = {}
        for name, u in zip(names, point):
            choices = search_space[name].choices
            out[name] = choices[min(int(u * len(choices)), len(choices) - 1)]
        return out

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()


AUTO_TPE_MAX_TRIALS = 1000


def auto_choice(n_objectives: int, n_trials: int | None = None) -> str:
    """What `auto` picks. Multivariate TPE reached the best front in benchmarks/sampler_hypervolume.py
    (300 trials of sandglass.yaml: 1.9x random search's hypervolume, NSGA-II 1.4x), but its cost per
    trial grows with the history, so long or open-ended runs get NSGA-II."""
    if n_trials is not None and n_trials <= AUTO_TPE_MAX_TRIALS:
        return "tpe"
    return "nsga2" if n_objectives > 1 else "tpe"


def _tpe(seed: int | None, constant_liar: bool = False) -> BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20, constant_liar=constant_liar)


register_sampler("tpe", "multivariate TPE", lambda seed, n_objectives, n_trials: _tpe(seed))
register_sampler("nsga2", "NSGA-II", lambda seed, n_objectives, n_trials: optuna.samplers.NSGAIISampler(seed=seed))
register_sampler("nsga3", "NSGA-III", lambda seed, n_objectives, n_trials: optuna.samplers.NSGAIIISampler(seed=seed))
register_sampler("gp", "Gaussian process", lambda seed, n_objectives, n_trials: optuna.samplers.GPSampler(seed=seed))
register_sampler("random", "random search", lambda seed, n_objectives, n_trials: RandomSampler(seed=seed))
register_sampler("qmc", "scrambled Sobol' points over the choice lists",
                 lambda seed, n_objectives, n_trials: CategoricalQMCSampler(seed=seed))
register_sampler("auto", f"multivariate TPE up to {AUTO_TPE_MAX_TRIALS} trials, NSGA-II for longer two-objective runs",
                 lambda seed, n_objectives, n_trials: make_sampler(auto_choice(n_objectives, n_trials), seed,
                                                                   n_objectives, n_trials))
