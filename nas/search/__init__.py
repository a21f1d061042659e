"""The search: Optuna samplers over a space's decisions, objectives, a latency constraint and storage."""
from __future__ import annotations

from nas.search.objectives import OBJECTIVES, Metrics, Objective, get_objective
from nas.search.results import hypervolume, pareto_frame, trials_frame
from nas.search.run import Search, SearchOutcome, SearchSettings, SearchStats
from nas.search.samplers import SAMPLERS, make_sampler
from nas.search.target import parse_latency

__all__ = ["OBJECTIVES", "SAMPLERS", "Metrics", "Objective", "Search", "SearchOutcome", "SearchSettings",
           "SearchStats", "get_objective", "hypervolume", "make_sampler", "pareto_frame", "parse_latency",
           "trials_frame"]
