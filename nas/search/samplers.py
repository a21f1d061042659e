"""`--sampler` names mapped to Optuna samplers, all seeded.

Every decision is an Optuna categorical under its flat name. Optuna's
`QMCSampler` samples numerical parameters only (it hands categoricals to its
random fallback), so `qmc` here is a small sampler that maps one scrambled
Sobol' point per trial onto the choice lists: a low-discrepancy design over
the categorical space, with the point index taken from the trial number so a
resumed study continues the sequence.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from nas.errors import NasError

SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random", "qmc", "auto")


class SamplerError(NasError, ValueError):
    """An unknown sampler name."""


class CategoricalQMCSampler(BaseSampler):
    """Scrambled Sobol' points over categorical choice lists (point `n` for trial number `n`)."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._fallback = RandomSampler(seed=seed)
        self._space: dict[str, CategoricalDistribution] | None = None
        self._engine: Any = None

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._space is None:
            done = study._get_trials(deepcopy=False, use_cache=True)
            for t in done:
                if t.state.is_finished() and t.distributions:
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


def make_sampler(name: str, seed: int | None, n_objectives: int, n_trials: int | None = None) -> BaseSampler:
    """The Optuna sampler for a `--sampler` name. Constraints reach it through `trial.set_constraint`."""
    if name == "auto":
        name = auto_choice(n_objectives, n_trials)
    makers: dict[str, Callable[[], BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "nsga3": lambda: optuna.samplers.NSGAIIISampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "qmc": lambda: CategoricalQMCSampler(seed=seed),
    }
    if name not in makers:
        raise SamplerError(f"--sampler: unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    with warnings.catch_warnings():  # NSGA-III is "experimental" in Optuna: a fact for the README, not each run
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return makers[name]()
