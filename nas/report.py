"""The run folder: tables, plots, the verified winner and its exports, all rebuilt from the study.

`write_report` is what `nas search` calls at the end and `nas report RUN_DIR`
calls on its own; the winner check itself is `nas.search.verify`. Every file
is written to a temporary name and renamed, so an interrupted report leaves
the previous version of each file whole.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import pandas as pd

from nas.errors import NasError
from nas.plots import pareto_html, pareto_png
from nas.search.shared import WORKER_ATTR_PREFIX
from nas.search.results import arch_of, candidate_frame, least_violating, pareto_frame, trials_frame
from nas.search.verify import WinnerCheck, repredicted, verify_winner
from nas.space import SearchSpace, plan, write_fixed
from proxies.atomic import write_bytes_atomic

RUN_INFO = "run.json"
WINNER_WEIGHTS = "best_weights.pt"
#: Writes an architecture's weights to a path (`SupernetObjective.save_weights`).
WeightsWriter = Callable[[SearchSpace, Mapping[str, Any], Path], Any]


@dataclass
class RunInfo:
    """How to find a run's study and table again (`run.json` in the run folder)."""

    space: str
    storage: str
    study_name: str
    target_ms: float
    objective: str
    mode: str
    sampler: str
    seed: int | None
    backend: str
    threads: int
    batch_size: int
    table: str | None
    # Shared mode: what a worker joining the run (`nas worker RUN_DIR`) needs besides the study itself.
    run_mode: str = "single"  # "shared": workers ask and tell on the stored study; "single": one process
    budget: int | None = None  # shared: COMPLETE trials the study ends with, all workers together
    workers: int | None = None  # local worker processes `nas search --workers` started
    latency_profile: str | None = None
    table_checksum: str | None = None
    machine_speed: float = 1.0  # the speed factor read once at the start; workers use it, never their own probe
    latency_margin: float | None = None
    data: str | None = None  # --objective trained (and supernet)
    epochs: int | None = None
    objective_option: str | None = None  # what --objective named (`objective` is the study's label for it)
    supernet: str | None = None  # --objective supernet: the checkpoint (absolute path)
    supernet_metric: str | None = None
    timeout_s: float | None = None  # each worker stops adding trials after this long
    heartbeat_s: float | None = None
    grace_s: float | None = None

    def save(self, run_dir: Path) -> None:
        _write_text(run_dir / RUN_INFO, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RunInfo:
        path = Path(run_dir) / RUN_INFO
        if not path.is_file():
            raise NasError(f"{run_dir}: not a run folder (no {RUN_INFO}); pass the folder `nas search` wrote")
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k, f in cls.__dataclass_fields__.items()
                          if k in data or f.default is dataclasses.MISSING})
        except (ValueError, KeyError, TypeError) as exc:
            raise NasError(f"{path}: damaged run description ({exc}); run `nas search` again to rewrite it") from None


def _write_text(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), 0o644)


def write_report(run_dir: str | os.PathLike, study: optuna.Study, space: SearchSpace, info: RunInfo, *,
                 latency: Any = None, measure: bool = True, extra: Mapping[str, Any] | None = None,
                 winner_weights: WeightsWriter | None = None) -> dict[str, Any]:
    """Write every report file into `run_dir` and return the summary (also saved as summary.json).
    The winner is chosen (and measured) by `nas.search.verify`; this writes what it found, and its
    weights (best_weights.pt) where `winner_weights` can give them (the supernet objective's)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trials = trials_frame(study, space)
    front = pareto_frame(trials)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    _write_text(run_dir / "trials.csv", trials.to_csv(index=False))
    _write_text(run_dir / "pareto.csv", front.to_csv(index=False))

    def arch_by_number(number: int) -> dict[str, Any]:
        return arch_of(by_number[number], space)

    candidates = trials
    if measure and latency is not None and not latency.profile.remote:  # ranked by the table as it is now
        candidates = repredicted(trials, space, arch_by_number, latency, info.machine_speed)
    check = verify_winner(space, front, arch_by_number, info.target_ms, latency, measure=measure,
                          candidates=candidate_frame(candidates))
    summary = _summary(info, trials, front, check, latency, extra)
    workers = {k[len(WORKER_ATTR_PREFIX):]: v for k, v in study.user_attrs.items() if k.startswith(WORKER_ATTR_PREFIX)}
    if workers or info.run_mode == "shared":  # which table and profile every worker scored with
        _write_text(run_dir / "workers.json", json.dumps(workers, indent=2, sort_keys=True) + "\n")
        summary["run_mode"], summary["budget"] = info.run_mode, info.budget
        done = trials[trials["state"] == "COMPLETE"]
        summary["workers"] = {w: {"complete": int((done["worker"] == w).sum()), "profile": v.get("profile"),
                                  "table_checksum": v.get("table_checksum")} for w, v in sorted(workers.items())}
    summary["backbone"] = backbone_point(space, info, latency)
    _write_plots(run_dir, trials, front, space, info, check.winner, summary["backbone"])
    if check.winner is not None:
        _write_winner(run_dir, space, arch_of(by_number[check.winner["number"]], space),
                      f"{space.name}-trial{check.winner['number']}", winner_weights)
    summary["files"] = sorted({p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
                              | {"summary.json"})
    write_summary(run_dir, summary)
    return summary


def write_summary(run_dir: str | os.PathLike, summary: Mapping[str, Any]) -> None:
    """(Re)write summary.json, atomically."""
    _write_text(Path(run_dir) / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")


# What only the search itself knew (its fit, its time, units it re-timed): summary.json keeps them when
# `nas report` rebuilds the folder from the study.
SEARCH_FIGURES = ("fastest_found", "latency_margin_note", "correction_note", "busy_unit_groups", "search_seconds",
                  "interrupted", "correction_recalibrated")


def search_figures(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The SEARCH_FIGURES of a run folder's summary.json, if it has one (an interrupted write has none)."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: summary[k] for k in SEARCH_FIGURES if k in summary} if isinstance(summary, dict) else {}


def _summary(info: RunInfo, trials: pd.DataFrame, front: pd.DataFrame, check: WinnerCheck, latency: Any,
             extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """summary.json's content, less the list of files."""
    summary: dict[str, Any] = {
        "space": info.space, "study_name": info.study_name, "storage": info.storage,
        "objective": info.objective, "mode": info.mode, "sampler": info.sampler, "seed": info.seed,
        "latency_profile": latency.profile.id if latency is not None else None,
        "target_latency_ms": info.target_ms, "latency_margin": info.latency_margin,
        "machine_speed_at_start": info.machine_speed,
        "n_trials": len(trials), "n_complete": int((trials["state"] == "COMPLETE").sum()),
        "n_feasible": int(trials["feasible"].sum()), "pareto_size": len(front),
        **dict(extra or {}),
    }
    if check.attempts:
        summary["machine_speed"] = check.machine_speed
        summary["measured_over_predicted"] = check.measured_over_predicted
        summary["machine_speed_range"] = None if check.machine_speed_range is None else list(check.machine_speed_range)
        if check.plain_timing_range_ms is not None:
            summary["plain_timing_range_ms"] = list(check.plain_timing_range_ms)
        if check.caution is not None:
            summary["winner_caution"] = check.caution
    if check.note is not None:
        summary["winner_note"] = check.note
    for point in check.attempts:  # the winner is one of them
        _predict_at_check_speed(point, info.machine_speed)
    summary["best"] = check.winner
    summary["winner_attempts"] = check.attempts
    if front.empty:
        summary["least_violating"] = least_violating(trials)[["number", "arch", "predicted_latency_ms", "objective"]] \
            .to_dict(orient="records")
    return summary


def _predict_at_check_speed(point: dict[str, Any], start_speed: float) -> None:
    """`predicted_at_check_ms`: a measured point's prediction at the machine's speed during its round of the
    check instead of the search's start: the table's figure, still a prediction, at the speed closest in
    time to a user's timing. In five searches on 2026-12-04 it came within 5% of torch.utils.benchmark
    for four winners, against none (one within 10%) at the start's speed (the host changed
    speed up to 1.4x between the two)."""
    if point.get("machine_speed") is not None and start_speed:
        point["predicted_at_check_ms"] = point["predicted_latency_ms"] / start_speed * point["machine_speed"]


def backbone_point(space: SearchSpace, info: RunInfo, latency: Any) -> dict[str, Any] | None:
    """Where the space's backbone (the published network it is built around) sits on the run's plot:
    its params, MACs and predicted latency at the run's machine speed, as the trials were predicted.
    Only for the `macs` and `params` objectives (others would need the objective run on it) and when
    the table covers it without measuring; None otherwise."""
    if not space.backbone or info.objective not in ("macs", "params") or latency is None:
        return None
    from nas.cost import CostModel
    from nas.space import load_space, project

    arch = project(space, load_space(space.backbone))
    if latency.missing(space, plan(space, arch).units):
        return None
    macs, params = CostModel.persistent().macs_params(space, arch)
    return {"file": space.backbone, "name": Path(space.backbone).stem, "macs": macs, "params": params,
            "objective": {"macs": macs, "params": params}[info.objective],
            "predicted_latency_ms": latency.predict_ms(space, arch) * info.machine_speed}


def _write_plots(run_dir: Path, trials: pd.DataFrame, front: pd.DataFrame, space: SearchSpace, info: RunInfo,
                 winner: dict[str, Any] | None, backbone: dict[str, Any] | None) -> None:
    title = f"{space.name}: {info.objective} vs predicted latency ({len(trials)} trials, {info.sampler})"
    write_bytes_atomic(run_dir / "pareto.png",
                       pareto_png(trials, front, objective=info.objective, target_ms=info.target_ms, title=title,
                                  winner=winner, backbone=backbone), 0o644)
    html = pareto_html(trials, front, objective=info.objective, target_ms=info.target_ms, title=title,
                       backbone=backbone)
    if html is not None:
        _write_text(run_dir / "pareto.html", html)


def _write_winner(run_dir: Path, space: SearchSpace, arch: dict[str, Any], name: str,
                  winner_weights: WeightsWriter | None = None) -> None:
    """best.yaml, best_model.py and best_model.onnx of the winner, and best_weights.pt when it has weights."""
    write_fixed(space, arch, run_dir / "best.yaml", name=name)
    from nas.export import export_onnx, export_python

    export_python(space, arch, run_dir / "best_model.py")
    export_onnx(space, arch, run_dir / "best_model.onnx")
    if winner_weights is not None:
        winner_weights(space, arch, run_dir / WINNER_WEIGHTS)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
