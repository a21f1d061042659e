"""The Python API: what the command line does, as functions for notebooks and scripts.

    from nas import api
    space = api.load_space("search_spaces/sandglass.yaml")
    result = api.search(space, "20ms", n_trials=300)
    result.pareto            # pandas DataFrame, sorted by predicted latency
    api.export(space, result.best_arch, "py", "model.py")
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import pandas as pd

from nas.cost import CostModel
from nas.errors import NasError
from nas.latency import (ArchLatency, LatencyModel, OpsExport, TableBuild, TableInfo, arch_latency, export_ops,
                         import_results, table_info, validate_table)
from nas.latency import build_table as _build_table
from nas.latency import model_for as latency_model
from nas.latency.build import Bars, Say
from nas.report import RunInfo, search_figures, write_report, write_summary
from nas.search.loop import Progress
from nas.search.results import pareto_frame, trials_frame
from nas.search.run import Search, SearchOutcome
from nas.search.samplers import sampler_label
from nas.search.settings import SearchSettings
from nas.search.storage import storage_for
from nas.search.target import parse_latency
from nas.space import SearchSpace, load_space
from nas.api_supernet import SubnetEval, SubnetExport, supernet_eval, supernet_export, train_supernet
from nas.workers import join_run, launch_workers, run_worker

__all__ = ["ArchLatency", "ArchStats", "OpsExport", "SearchResult", "SearchSettings", "SpaceInfo", "SubnetEval",
           "SubnetExport", "TableBuild", "TableInfo", "arch_latency", "arch_stats", "build_table", "export",
           "export_ops", "import_results", "join_run", "latency_model", "load_space", "pareto", "prepare_search",
           "report", "run_search", "run_worker", "search", "space_info", "supernet_eval", "supernet_export",
           "table_info", "train", "train_supernet", "trials", "validate_table"]

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and the report say what matters


@dataclass
class SearchResult:
    """A finished (or interrupted) search: the study, the run folder and what the report found."""

    outcome: SearchOutcome
    space: SearchSpace

    @property
    def summary(self) -> dict[str, Any]:
        return self.outcome.summary

    @property
    def trials(self) -> pd.DataFrame:
        return trials_frame(self.outcome.study, self.space)

    @property
    def pareto(self) -> pd.DataFrame:
        return pareto_frame(self.trials)

    @property
    def best_arch(self) -> dict[str, Any] | None:
        best = self.summary.get("best")
        if best is None:
            return None
        trial = self.outcome.study.get_trials(deepcopy=False)[best["number"]]
        return dict(trial.params)


def _space(space: SearchSpace | str | os.PathLike) -> SearchSpace:
    return space if isinstance(space, SearchSpace) else load_space(str(space))


def prepare_search(space: SearchSpace | str | os.PathLike, settings: SearchSettings,
                   latency: LatencyModel | None = None, cost: CostModel | None = None,
                   say: Callable[[str], None] | None = None, bars: Bars | None = None) -> Search:
    """Check everything (settings, target reachable, storage, an existing study's origin), then open the study.
    Pass one `cost` model to several searches to share its per-unit fvcore counts; `say` hears a line
    before slow set-up work, whose loops `bars(desc, unit)` may wrap in progress bars: fitting a latency
    correction and, with `settings.workers`, making the table cover every unit of the space first, so
    that no worker measures."""
    search = Search(_space(space), settings, latency or latency_model(), cost)
    search.connect_early()
    if settings.workers is not None:
        missing = len(search.latency.missing(search.space, _units(search.space)))
        if missing and say is not None and search.latency.measure_missing:
            say(f"measuring the {missing} units of the space the latency table lacks, before any worker starts")
        search.cover_space(bars("table", "unit") if bars else None)
    search.checked_target(say, bars)
    search.open()
    return search


def _units(space: SearchSpace) -> list:
    from nas.space import unique_units

    return list(unique_units(space).values())


def _run_info(search: Search, table_path: str | None) -> RunInfo:
    profile = search.latency.profile
    s = search.settings
    info = RunInfo(space=str(search.space.file), storage=search.storage_url, study_name=search.study_name,
                   target_ms=search.spec.target_ms, objective=search.spec.objective, mode=search.spec.mode,
                   sampler=sampler_label(s.sampler, len(search.spec.directions), s.n_trials), seed=s.seed,
                   backend=profile.backend, threads=profile.threads, batch_size=profile.batch_size,
                   table=table_path or (str(search.latency.table.path) if search.latency.table.path else None),
                   latency_profile=profile.id, machine_speed=search.speed, latency_margin=search.margin,
                   data=s.data, epochs=s.epochs, objective_option=s.objective,
                   supernet=str(Path(s.supernet).resolve()) if s.supernet else None,
                   supernet_metric=s.supernet_metric if s.supernet else None)
    if search.shared:
        table = search.latency.table
        info.table = str(Path(info.table).resolve()) if info.table else None  # workers may start elsewhere
        info.space = str(Path(info.space).resolve())
        info.run_mode, info.workers, info.budget = "shared", s.workers, search.start_shared()
        info.table_checksum = table.to_document()["checksum"]
        info.heartbeat_s, info.grace_s, info.timeout_s = s.heartbeat_s, s.grace_s, s.timeout_s
    return info


def run_search(search: Search, *, progress: Progress | None = None, measure: bool = True,
               table_path: str | None = None, say: Callable[[str], None] | None = None) -> SearchResult:
    """Run the loop (or, with `settings.workers`, start the workers and wait for them), then write the run
    folder (also after Ctrl-C, with the trials completed so far)."""
    info = _run_info(search, table_path)
    search.run_dir.mkdir(parents=True, exist_ok=True)
    info.save(search.run_dir)
    if search.settings.workers is not None:
        outcome = launch_workers(search, search.settings.workers, progress=progress, say=say)
    else:
        outcome = search.run(progress)
    # Units a busy machine kept slow through every try are timed again now, unless the user stopped the run.
    busy = search.settle_disturbed(retime=not outcome.interrupted)
    outcome.summary = write_report(search.run_dir, outcome.study, search.space, info, latency=search.latency,
                                   measure=measure, extra={"fastest_found": outcome.fastest,
                                                           "latency_margin_note": search.margin_note,
                                                           "correction_note": search.fit_note,
                                                           "busy_unit_groups": busy,
                                                           "search_seconds": round(outcome.elapsed_s, 3),
                                                           "interrupted": outcome.interrupted},
                                   winner_weights=getattr(search.objective, "save_weights", None))
    if not outcome.interrupted:
        recalibration = search.recalibrate(outcome.summary.get("winner_attempts") or [])
        if recalibration is not None:
            outcome.summary["correction_recalibrated"] = recalibration
            write_summary(search.run_dir, outcome.summary)
    return SearchResult(outcome, search.space)


def search(space: SearchSpace | str | os.PathLike, target_latency: str | float, *, progress: Progress | None = None,
           measure: bool = True, latency: LatencyModel | None = None, cost: CostModel | None = None,
           **settings: Any) -> SearchResult:
    """One call: `search(space, "20ms", n_trials=300, sampler="nsga2")`; keywords are `SearchSettings` fields."""
    search_ = prepare_search(space, SearchSettings(target_ms=parse_latency(target_latency), **settings), latency, cost)
    return run_search(search_, progress=progress, measure=measure)


def _load_run(run_dir: str | os.PathLike) -> tuple[RunInfo, SearchSpace, optuna.Study]:
    info = RunInfo.load(run_dir)
    space = load_space(info.space)
    storage = storage_for(info.storage)
    try:
        study = optuna.load_study(study_name=info.study_name, storage=storage)
    except KeyError:
        raise NasError(f"{run_dir}: study {info.study_name!r} is not in {info.storage}") from None
    return info, space, study


def trials(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every trial of a run folder's study (one row each)."""
    _, space, study = _load_run(run_dir)
    return trials_frame(study, space)


def pareto(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The feasible Pareto front of a run folder's study, sorted by predicted latency."""
    return pareto_frame(trials(run_dir))


def report(run_dir: str | os.PathLike, *, measure: bool = True) -> dict[str, Any]:
    """Rebuild a run folder's files from its study (`nas report`)."""
    info, space, study = _load_run(run_dir)
    from proxies.latency import LatencyError

    try:  # the winner is measured on this machine, so its profile must match the run's
        latency = latency_model(info.backend, info.threads, info.batch_size, info.table, measure_missing=False)
    except LatencyError:
        if measure:
            raise
        latency = None
    summary = write_report(run_dir, study, space, info, latency=latency, measure=measure,
                           extra=search_figures(run_dir), winner_weights=_winner_weights(info))
    return {"summary": summary, "study": study}


def _winner_weights(info: RunInfo) -> Callable[..., Any] | None:
    """A run's objective's weights writer (the supernet's), made again from run.json."""
    if not info.supernet:
        return None
    from nas.search.objectives import get_objective

    objective = get_objective(info.objective_option or "supernet", data=info.data, supernet=info.supernet,
                              supernet_metric=info.supernet_metric)
    return getattr(objective, "save_weights", None)


def export(space: SearchSpace | str | os.PathLike, arch: Mapping[str, Any] | None, fmt: str,
           path: str | os.PathLike, **options: Any) -> Path:
    """Write `arch` of `space` as a standalone .py, TorchScript or ONNX file (see `nas.export`)."""
    from nas.export import export as export_

    return export_(_space(space), arch, fmt, path, **options)


def build_table(space: SearchSpace | str | os.PathLike, latency: LatencyModel, *, fit: int = 20, refit: bool = False,
                passes: int = 1, say: Say | None = None, bars: Bars | None = None) -> TableBuild:
    """Measure a space's units into `latency`'s table, fit its correction and save it (`nas lut build`, see
    `nas.latency.build_table`); the per-unit cost counts are warmed too, so a later search never traces."""
    space = _space(space)

    def warm_counts(units: list) -> None:
        costs = CostModel.persistent()
        todo = [u for u in units if not costs.has(u)]
        bar = bars("counting units", "unit") if bars is not None and todo else None
        for unit in bar(todo) if bar else todo:
            costs.unit_counts(unit, space)
        costs.save()

    return _build_table(latency, space, fit=fit, refit=refit, passes=passes, say=say, bars=bars,
                        after_fill=warm_counts)


# ---- single spaces and architectures (`nas space`, `nas arch`, `nas train`) ----------------------------

@dataclass(frozen=True)
class SpaceInfo:
    """What `nas space show` prints: the decisions of a space, its size and its backbone's costs."""

    name: str
    file: str
    stages: list[str]
    decisions: list[dict[str, Any]]  # {"name": flat decision name, "choices": [...]}
    log10_size: float
    backbone: dict[str, Any] | None  # {"file", "resolution", "params", "macs", "flops"} of the backbone
    is_fixed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "stages": self.stages, "decisions": self.decisions,
                "log10_size": round(self.log10_size, 4), "backbone": self.backbone}


def space_info(path: str | os.PathLike, *, backbone: bool = True) -> SpaceInfo:
    """Load and validate the space at `path`; with `backbone`, also cost the fixed architecture it names."""
    from nas.space import decisions, log10_size, project

    space = load_space(path)
    costs = None
    if backbone and space.backbone:
        cost = CostModel().cost(space, project(space, load_space(space.backbone)))
        costs = {"file": space.backbone, "resolution": cost.resolution, "params": cost.params, "macs": cost.macs,
                 "flops": cost.flops}
    return SpaceInfo(name=space.name, file=str(path), stages=[s.name for s in space.stages],
                     decisions=[{"name": d.name, "choices": list(d.choices)} for d in decisions(space)],
                     log10_size=log10_size(space), backbone=costs, is_fixed=space.is_fixed)


@dataclass(frozen=True)
class ArchStats:
    """Costs of one fixed architecture, per unit and in total, and its latency figures when asked for."""

    name: str
    file: str
    resolution: int
    params: int
    macs: int
    flops: int
    flops_by_operator: dict[str, int]
    blocks: list[dict[str, Any]]  # per unit: stage, index, op, key, input_shape, params, macs, flops
    latency: ArchLatency | None = None


def arch_stats(path: str | os.PathLike, latency: LatencyModel | None = None, *, measure: bool = False) -> ArchStats:
    """Count the fixed architecture at `path` unit by unit; with a `latency` model, predict it too
    (measuring missing units into its table) and, with `measure`, time it end to end."""
    from nas.space import load_fixed

    space = load_fixed(path)
    cost = CostModel().cost(space)
    blocks = [{"stage": u.unit.stage, "index": u.unit.index, "op": u.unit.key.config.op, "key": u.unit.text,
               "input_shape": list(u.unit.key.input_shape), "params": u.counts.params, "macs": u.counts.macs,
               "flops": u.counts.flops} for u in cost.units]
    stats = arch_latency(latency, space, measure=measure) if latency is not None else None
    return ArchStats(name=space.name, file=str(path), resolution=cost.resolution, params=cost.params,
                     macs=cost.macs, flops=cost.flops, flops_by_operator=cost.by_operator(), blocks=blocks,
                     latency=stats)


def train(arch: SearchSpace | str | os.PathLike, data: str | os.PathLike = "digits", epochs: int = 3, *,
          threads: int | None = None, weights_out: str | os.PathLike | None = None,
          weights: str | os.PathLike | None = None, **options: Any) -> Any:
    """Train a fixed architecture (see `nas.train.train` for `options`) with `threads` torch threads (restored
    afterwards): from scratch, or fine-tuned from the state_dict file `weights` (loaded strictly; one that
    does not fit is refused in one line), and save its trained weights to `weights_out` when given."""
    import torch

    from nas.export import load_weights, save_weights
    from nas.space import load_fixed
    from nas.train import train as train_

    space = arch if isinstance(arch, SearchSpace) else load_fixed(arch)
    if weights is not None:
        options["start_from"] = lambda model: load_weights(model, weights, what=f"{space.name} ({space.file})")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = train_(space, None, data, epochs, **options)
    finally:
        torch.set_num_threads(before)
    if weights_out is not None:
        save_weights(result.model, weights_out)
    return result
