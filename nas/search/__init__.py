"""The search: Optuna samplers over a space's decisions, objectives, a latency constraint and storage."""
from __future__ import annotations

from nas.search.loop import Progress, SearchStats
from nas.search.objectives import OBJECTIVES, Metrics, Objective, get_objective, objective_names, register_objective
from nas.search.results import hypervolume, pareto_frame, trials_frame
from nas.search.run import Search, SearchOutcome
from nas.search.samplers import SAMPLERS, make_sampler, register_sampler
from nas.search.settings import SearchSettings
from nas.search.target import parse_latency

__all__ = ["OBJECTIVES", "SAMPLERS", "Metrics", "Objective", "Progress", "Search", "SearchOutcome", "SearchSettings",
           "SearchStats", "get_objective", "hypervolume", "make_sampler", "objective_names", "pareto_frame",
           "parse_latency", "register_objective", "register_sampler", "trials_frame"]
