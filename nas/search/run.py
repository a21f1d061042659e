"""One search: the settings checked, the study created or resumed, the latency table made ready, the loop run.

Sampling runs on an in-memory copy of the study (loaded from the storage when
resuming); `nas.search.loop` runs the trials and `nas.search.storage` writes
the finished ones in batches.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from nas.cost import CostModel
from nas.latency import LatencyModel
from nas.search.fastest import TargetUnreachableError, require_reachable
from nas.search.loop import Progress, SearchStats, run_trials
from nas.search.objective_registry import Metrics
from nas.search.objectives import get_objective
from nas.search.samplers import make_sampler
from nas.search.settings import FIT_NETWORKS, MODES, SearchSettings
from nas.search.storage import TrialBatches, open_storage
from nas.search.study import StudySpec, open_study, space_fingerprint
from nas.search.target import format_latency
from nas.space import SearchSpace, canonical, decisions, encode

__all__ = ["CONSTRAINT", "FIT_NETWORKS", "MODES", "Progress", "Search", "SearchOutcome", "SearchSettings",
           "SearchStats", "TargetUnreachableError", "default_run_dir", "sqlite_url"]

CONSTRAINT = "latency_ms"  # constraint value: upper predicted latency minus target (feasible when <= 0)
FIT_PASSES = 2


@dataclass
class SearchOutcome:
    study: optuna.Study
    run_dir: Path
    storage_url: str
    stats: SearchStats
    elapsed_s: float
    interrupted: bool = False
    fastest: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # filled by the report


def default_run_dir(space: SearchSpace, target_ms: float) -> Path:
    return Path("runs") / f"{space.name}-{format_latency(target_ms)}"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


class Search:
    """One search: validated settings, the study (created or resumed) and the loop."""

    def __init__(self, space: SearchSpace, settings: SearchSettings, latency: LatencyModel,
                 cost: CostModel | None = None) -> None:
        settings.check()
        s = settings
        self.space, self.settings, self.latency = space, s, latency
        self.cost = cost or CostModel.persistent()
        self.objective = get_objective(s.objective, seed=s.seed or 0, data=s.data, epochs=s.epochs)
        self.spec = StudySpec(space=space.name, space_fingerprint=space_fingerprint(space),
                              objective=self.objective.name,
                              target_ms=float(s.target_ms), mode=s.mode, latency_profile=latency.profile.id)
        self.sampler = make_sampler(s.sampler, s.seed, len(self.spec.directions), s.n_trials)
        self.run_dir = Path(s.run_dir) if s.run_dir else default_run_dir(space, s.target_ms)
        self.storage_url = s.storage or sqlite_url(self.run_dir / "study.db")
        self.study_name = s.study_name or self.run_dir.name
        self._decisions = [(d.name, list(d.choices)) for d in decisions(space)]
        self._cache: dict[Any, tuple[Metrics, float, str]] = {}
        self.storage: optuna.storages.BaseStorage | None = None
        self.study: optuna.Study | None = None
        self.memory: optuna.Study | None = None
        self.stats = SearchStats()
        self.fastest: dict[str, Any] = {}
        self._start: dict[str, Any] = {}
        self.margin = s.latency_margin if s.latency_margin is not None else latency.default_margin()
        self.fit_note: str | None = None  # what fitting a correction at the start found, if it ran
        # The machine's speed against the table's level when the search starts (> 1: slower). Every
        # prediction of this run is multiplied by it, so that it means what a plain timing will
        # show now; it is 1 when the probe reads within its own noise of the level.
        self.speed = 1.0

    # ---- scoring -------------------------------------------------------------------------------
    def score(self, values: dict[str, Any]) -> tuple[Metrics, float, str]:
        """Metrics, objective and code of an architecture; equal networks are scored once."""
        arch = canonical(self.space, values)
        hit = self._cache.get(arch)
        if hit is None:
            macs, params = self.cost.macs_params(self.space, arch)
            metrics = Metrics(macs=macs, params=params, latency_ms=self.predict_ms(arch))
            hit = (metrics, float(self.objective.score(self.space, arch, metrics)), encode(self.space, arch))
            self._cache[arch] = hit
        return hit

    def _evaluate(self, trial: optuna.Trial) -> tuple[list[float], bool]:
        values = {name: trial.suggest_categorical(name, choices) for name, choices in self._decisions}
        metrics, objective, code = self.score(values)
        upper = metrics.latency_ms * (1 + self.margin)
        for key, value in (("macs", metrics.macs), ("params", metrics.params),
                           ("predicted_latency_ms", metrics.latency_ms), ("latency_upper_ms", upper),
                           ("objective", objective), ("arch", code)):
            trial.set_user_attr(key, value)
        trial.set_constraint(CONSTRAINT, upper - self.spec.target_ms)
        objectives = [objective, metrics.latency_ms] if self.spec.mode == "multi" else [objective]
        return objectives, upper <= self.spec.target_ms

    # ---- setup ---------------------------------------------------------------------------------
    def predict_ms(self, arch: Any) -> float:
        """The table's prediction at the machine's speed now."""
        return self.latency.predict_ms(self.space, arch) * self.speed

    def calibrate(self) -> None:
        """Read the machine's speed now (the probe against the table's level), where this machine may be
        measured at all."""
        if self.latency.measure_missing and not self.latency.profile.remote:
            self.speed = self.latency.current_speed()

    def fit_if_needed(self, say: Callable[[str], None] | None = None) -> None:
        """A table with no correction (a first search from an empty cache) gets one fitted on a few
        networks first, so predictions mean end-to-end latency, not a sum of blocks; the margin then
        follows the fit's residuals unless one was given."""
        m, s = self.latency, self.settings
        if m.table.correction is not None or not s.fit or not m.measure_missing or m.profile.remote:
            return
        if say is not None:
            say(f"the latency table has no correction yet: measuring {s.fit} networks end to end to fit one "
                f"(once per table)")
        m.fit_correction(self.space, n=s.fit, passes=FIT_PASSES)
        self.fit_note = m.last_fit_note
        if s.latency_margin is None:
            self.margin = m.default_margin()

    def check_target(self) -> tuple[dict[str, Any], float]:
        """Refuse a target that no architecture found by a quick descent on the table can meet."""
        arch, ms = require_reachable(self.space, self.predict_ms, self.spec.target_ms, self.margin,
                                     self.latency.profile.id)
        self.fastest = {"arch": encode(self.space, arch), "predicted_latency_ms": ms}
        return arch, ms

    def checked_target(self, say: Callable[[str], None] | None = None) -> float:
        """`check_target`, keeping the table entries it measured even when it fails."""
        try:
            with self._table_journal():
                self.fit_if_needed(say)
                self.calibrate()
                self._start, ms = self.check_target()
        finally:
            self._save_table()
        return ms

    def open(self) -> optuna.Study:
        """Create or resume the study; earlier trials are loaded into the sampler's in-memory copy."""
        if self.settings.storage is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(self.storage_url)
        self.study = open_study(self.spec, self.storage, self.storage_url, self.study_name)
        earlier = [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]
        self.memory = optuna.create_study(directions=self.spec.directions, sampler=self.sampler)
        self.memory.add_trials(earlier)
        for t in earlier:
            if t.state == TrialState.COMPLETE:
                self.stats.add(t.values[0], all(v <= 0 for v in t.constraints.values()), new=False)
        return self.study

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> SearchOutcome:
        """Add up to `n_trials` trials (or until `timeout_s`), flushing to the storage as it goes."""
        if not self.fastest:
            self.checked_target()
        if self.memory is None:
            self.open()
        if self.stats.total == 0 and not self.memory.get_trials(deepcopy=False):
            self.memory.enqueue_trial(self._start)  # a feasible first trial gives every sampler a foothold
        batches = TrialBatches(self.memory, self.storage, self.study_name, self.settings.flush_every_s)
        result = run_trials(self.memory, self._evaluate, batches, self.stats, self.settings, progress=progress,
                            guard=self._table_journal, on_exit=self._save_table)
        return SearchOutcome(study=self.study, run_dir=self.run_dir, storage_url=self.storage_url, stats=self.stats,
                             elapsed_s=result.elapsed_s, interrupted=result.interrupted, fastest=self.fastest)

    def _save_table(self) -> None:
        """Keep what this run measured and counted (no-ops when nothing is new or nothing has a file)."""
        self.cost.save()
        if self.latency.table.path is not None and not self.latency.profile.remote:
            self.latency.table.save()

    @contextmanager
    def _table_journal(self) -> Iterator[None]:
        """Units measured on first use are journaled, so a kill loses one entry at most."""
        table = self.latency.table
        if self.latency.measure_missing and not self.latency.profile.remote and table.path is not None:
            with table.open_journal():
                yield
        else:
            yield
