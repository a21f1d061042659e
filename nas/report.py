"""The run folder: tables, plots, the verified winner and its exports, all rebuilt from the study.

`write_report` is what `nas search` calls at the end and `nas report RUN_DIR`
calls on its own. Every file is written to a temporary name and renamed, so
an interrupted report leaves the previous version of each file whole.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import pandas as pd

from nas.errors import NasError
from nas.plots import pareto_html, pareto_png
from nas.search.results import least_violating, pareto_frame, trials_frame
from nas.space import SearchSpace, decisions, write_fixed
from proxies.atomic import write_bytes_atomic

RUN_INFO = "run.json"
MAX_WINNER_TRIES = 6  # Pareto points the winner check measures together
WINNER_PASSES = 3


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

    def save(self, run_dir: Path) -> None:
        _write_text(run_dir / RUN_INFO, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RunInfo:
        path = Path(run_dir) / RUN_INFO
        if not path.is_file():
            raise NasError(f"{run_dir}: not a run folder (no {RUN_INFO}); pass the folder `nas search` wrote")
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as exc:
            raise NasError(f"{path}: damaged run description ({exc}); run `nas search` again to rewrite it") from None


def _write_text(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), 0o644)


def _arch_of(trial: optuna.trial.FrozenTrial, space: SearchSpace) -> dict[str, Any]:
    return {d.name: trial.params[d.name] for d in decisions(space)}


def choose_winner(front: pd.DataFrame, target_ms: float,
                  measure: Callable[[list[int]], list[tuple[float, float]]] | None
                  ) -> tuple[dict[str, Any] | None, list[dict]]:
    """The best-objective front point whose end-to-end measurement meets the target.

    The best MAX_WINNER_TRIES - 1 points by objective and the front's fastest point (the likeliest
    to meet the target) are measured in one call, in reshuffled passes, so that a slow minute of the
    machine is shared by all of them instead of failing one: `measure(numbers)` returns (median,
    spread) in ms for each.
    Without a measure function the best point wins on its prediction alone.
    """
    rows = list(front.iloc[::-1].itertuples(index=False))  # best objective first, the fastest point last
    if not rows:
        return None, []
    chosen = rows[: MAX_WINNER_TRIES - 1] + ([rows[-1]] if len(rows) >= MAX_WINNER_TRIES else [])
    points = [{"number": int(row.number), "arch": row.arch, "macs": int(row.macs), "params": int(row.params),
               "objective": float(row.objective), "predicted_latency_ms": float(row.predicted_latency_ms),
               "measured_latency_ms": None} for row in chosen]
    if measure is None:
        return points[0], []
    for point, (median, spread) in zip(points, measure([p["number"] for p in points])):
        point.update(measured_latency_ms=median, measured_spread_ms=spread, meets_target=median <= target_ms)
    winner = next((p for p in points if p["meets_target"]), None)
    return winner, points


def write_report(run_dir: str | os.PathLike, study: optuna.Study, space: SearchSpace, info: RunInfo, *,
                 latency: Any = None, measure: bool = True, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write every report file into `run_dir` and return the summary (also saved as summary.json)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trials = trials_frame(study, space)
    front = pareto_frame(trials)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    _write_text(run_dir / "trials.csv", trials.to_csv(index=False))
    _write_text(run_dir / "pareto.csv", front.to_csv(index=False))

    can_measure = measure and latency is not None and not latency.profile.remote

    def measure_points(numbers: list[int]) -> list[tuple[float, float]]:
        # Each point alone, warm back-to-back calls between two probe readings, three reshuffled
        # passes, median: the figure a plain timing of best_model.py shows now, which is what the
        # search's predictions (table level x the machine's speed at its start) stand for. The
        # figures at the table's level are kept beside them.
        level = latency.measure_networks(space, [_arch_of(by_number[n], space) for n in numbers], passes=WINNER_PASSES)
        level_by_number.update(zip(numbers, level))
        return [(raw, cv * raw) for raw, cv in zip(latency.last_raw, latency.last_pass_spread)]

    level_by_number: dict[int, float] = {}
    winner, attempts = choose_winner(front, info.target_ms, measure_points if can_measure else None)
    summary: dict[str, Any] = {
        "space": info.space, "study_name": info.study_name, "storage": info.storage,
        "objective": info.objective, "mode": info.mode, "sampler": info.sampler, "seed": info.seed,
        "latency_profile": latency.profile.id if latency is not None else None,
        "target_latency_ms": info.target_ms,
        "n_trials": len(trials), "n_complete": int((trials["state"] == "COMPLETE").sum()),
        "n_feasible": int(trials["feasible"].sum()), "pareto_size": len(front),
        **dict(extra or {}),
    }
    for point in attempts:
        point["measured_level_ms"] = level_by_number[point["number"]]
    if attempts:
        # > 1: the machine ran slower during the winner check than at the table's level.
        summary["machine_speed"] = latency.last_speed
    if winner is None and attempts:
        # Every measured point missed the target: report the fastest measured one, and say so.
        winner = min(attempts, key=lambda a: a["measured_latency_ms"])
        summary["winner_note"] = (f"none of the {len(attempts)} Pareto points measured met "
                                  f"{info.target_ms:g} ms when measured end to end; best shows the fastest measured")
    elif attempts and attempts[0]["number"] != winner["number"]:
        first = attempts[0]
        summary["winner_note"] = (f"trial {first['number']} was predicted at {first['predicted_latency_ms']:.2f} ms "
                                  f"but measured {first['measured_latency_ms']:.2f} ms; took the best Pareto point "
                                  f"that meets the target when measured (trial {winner['number']}), of "
                                  f"{len(attempts)} measured together")
    elif winner is not None and not can_measure:
        summary["winner_note"] = "the winner was not measured end to end (" + (
            "the latency table was imported from another device)" if latency is not None and measure
            else "measuring was turned off)")
    summary["best"] = winner
    summary["winner_attempts"] = attempts
    if front.empty:
        summary["least_violating"] = least_violating(trials)[["number", "arch", "predicted_latency_ms", "objective"]] \
            .to_dict(orient="records")
    title = f"{space.name}: {info.objective} vs predicted latency ({len(trials)} trials, {info.sampler})"
    write_bytes_atomic(run_dir / "pareto.png",
                       pareto_png(trials, front, objective=info.objective, target_ms=info.target_ms, title=title,
                                  winner=winner), 0o644)
    html = pareto_html(trials, front, objective=info.objective, target_ms=info.target_ms, title=title)
    if html is not None:
        _write_text(run_dir / "pareto.html", html)
    if winner is not None:
        arch = _arch_of(by_number[winner["number"]], space)
        name = f"{space.name}-trial{winner['number']}"
        write_fixed(space, arch, run_dir / "best.yaml", name=name)
        from nas.export import export_onnx, export_python

        export_python(space, arch, run_dir / "best_model.py")
        export_onnx(space, arch, run_dir / "best_model.onnx")
    summary["files"] = sorted({p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
                              | {"summary.json"})
    _write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    return summary


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
