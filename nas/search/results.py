"""A study's trials as tables: one row per trial, and the feasible Pareto front (compute, not draw)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import optuna
import pandas as pd

from nas.space import SearchSpace, decisions

METRIC_COLUMNS = ["macs", "params", "predicted_latency_ms", "latency_upper_ms", "objective", "feasible"]


def trials_frame(study: optuna.Study | Sequence[optuna.trial.FrozenTrial], space: SearchSpace) -> pd.DataFrame:
    """Columns: number, state, one per decision, macs, params, predicted_latency_ms, latency_upper_ms (the
    prediction plus the search's latency margin, what feasibility was judged on), objective, feasible, arch,
    worker (host:pid of the process that scored it)."""
    trials = study.get_trials(deepcopy=False) if isinstance(study, optuna.Study) else list(study)
    names = [d.name for d in decisions(space)]
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name}
        row.update({n: t.params.get(n) for n in names})
        ua = t.user_attrs
        feasible = bool(t.constraints) and all(v <= 0 for v in t.constraints.values())
        row.update(macs=ua.get("macs"), params=ua.get("params"), predicted_latency_ms=ua.get("predicted_latency_ms"),
                   latency_upper_ms=ua.get("latency_upper_ms"), objective=ua.get("objective"), feasible=feasible and t.state == optuna.trial.TrialState.COMPLETE,
                   arch=ua.get("arch"), worker=ua.get("worker"))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["number", "state", *names, *METRIC_COLUMNS, "arch", "worker"])
    return frame.sort_values("number", kind="stable").reset_index(drop=True)


def arch_of(trial: optuna.trial.FrozenTrial, space: SearchSpace) -> dict[str, Any]:
    """The architecture a trial sampled: its value for every decision of the space."""
    return {d.name: trial.params[d.name] for d in decisions(space)}


def pareto_mask(objective: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (objective higher-or-equal and latency lower-or-equal,
    one strictly). Duplicates of a front point are all kept."""
    order = np.lexsort((-objective, latency))  # by latency, then best objective first
    keep = np.zeros(len(objective), dtype=bool)
    best = -np.inf
    previous: tuple[float, float] | None = None
    for i in order:
        point = (latency[i], objective[i])
        if objective[i] > best or point == previous:
            keep[i] = True
            best = max(best, objective[i])
            previous = point
    return keep


def _front(rows: pd.DataFrame) -> pd.DataFrame:
    """The non-dominated rows (objective up, predicted latency down), sorted by predicted latency."""
    if rows.empty:
        return rows.copy()
    mask = pareto_mask(rows["objective"].to_numpy(float), rows["predicted_latency_ms"].to_numpy(float))
    return rows[mask].sort_values(["predicted_latency_ms", "number"], kind="stable").reset_index(drop=True)


def pareto_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The feasible, completed, non-dominated trials, sorted by predicted latency."""
    return _front(trials[trials["feasible"]])


def candidate_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The completed, non-dominated trials whether feasible or not, sorted by predicted latency: what the
    winner check may pick from once measurements show the predictions were off (a point the search
    judged too slow can meet the target when measured)."""
    done = trials[(trials["state"] == "COMPLETE") & trials["objective"].notna()
                  & trials["predicted_latency_ms"].notna()]
    return _front(done.sort_values("number", kind="stable").drop_duplicates("arch"))  # a repeat is one network


def least_violating(trials: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """When nothing is feasible: the completed trials closest to the target."""
    done = trials[trials["state"] == "COMPLETE"]
    return done.sort_values(["predicted_latency_ms", "number"]).head(k).reset_index(drop=True)


def hypervolume(objective: np.ndarray, latency: np.ndarray, ref_objective: float, ref_latency: float) -> float:
    """Area dominated by the points (maximise objective, minimise latency) up to the reference point."""
    keep = (objective > ref_objective) & (latency < ref_latency)
    if not keep.any():
        return 0.0
    obj, lat = objective[keep], latency[keep]
    mask = pareto_mask(obj, lat)
    order = np.argsort(lat[mask])
    lat_sorted, obj_sorted = lat[mask][order], obj[mask][order]
    edges = np.append(lat_sorted[1:], ref_latency)
    # Along increasing latency the front's objective rises; each step owns the slab up to the next point.
    return float(np.sum((edges - lat_sorted) * (obj_sorted - ref_objective)))
