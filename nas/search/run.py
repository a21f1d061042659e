"""One search: the settings checked, the study created or resumed, the latency table made ready, the loop run.

Single process (the default): sampling runs on an in-memory copy of the study
(loaded from the storage when resuming); `nas.search.loop` runs the trials and
`nas.search.storage` writes the finished ones in batches. Shared mode
(`--workers N`, a server storage, `nas worker`): every worker asks and tells on
the stored study itself (`nas.search.shared`).
"""
from __future__ import annotations

import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.cost import CostModel
from nas.latency import Bars, LatencyModel, margin_note, no_bars, recalibrated
from nas.search.fastest import TargetUnreachableError, require_reachable
from nas.search.loop import Progress, SearchStats, run_shared, run_trials
from nas.search.objective_registry import Metrics
from nas.search.objectives import get_objective
from nas.search.samplers import make_sampler
from nas.search.settings import FIT_NETWORKS, MODES, SearchSettings
from nas.search.shared import BUDGET_ATTR, RUN_MODE_ATTR, WORKER_ATTR_PREFIX, WorkerLoop, waiting_trial, worker_id
from nas.search.storage import TrialBatches, creates_a_file, is_journal, is_server, journal_url, storage_for
from nas.search.study import StudySpec, open_study, space_fingerprint
from nas.search.target import format_latency
from nas.space import SearchSpace, canonical, decisions, encode, unique_units

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


def default_storage(run_dir: Path) -> str:
    """A run folder's storage: its study.db (SQLite) when an earlier search left one, so old runs resume
    as they are, else the journal file study.journal (public writes at 1.5 ms a trial, several processes
    of one machine may share it)."""
    old = run_dir / "study.db"
    return sqlite_url(old) if old.exists() else journal_url(run_dir / "study.journal")


def storage_url(text: str | None, run_dir: Path) -> str:
    """`--storage` as recorded: journal files as `journal:ABSOLUTE_PATH`, URLs as given."""
    if text is None:
        return default_storage(run_dir)
    return journal_url(text.removeprefix("journal:")) if is_journal(text) else text


def shared_seed(seed: int | None, me: str) -> int | None:
    """A worker's own sampler seed: workers with one seed would propose the same random start points."""
    return None if seed is None else (seed * 1_000_003 + zlib.crc32(me.encode())) % 2**32


class Search:
    """One search: validated settings, the study (created or resumed) and the loop."""

    def __init__(self, space: SearchSpace, settings: SearchSettings, latency: LatencyModel,
                 cost: CostModel | None = None) -> None:
        settings.check()
        s = settings
        self.space, self.settings, self.latency = space, s, latency
        self.cost = cost or CostModel.persistent()
        self.objective = get_objective(s.objective, seed=s.seed or 0, data=s.data, epochs=s.epochs,
                                       supernet=s.supernet, supernet_metric=s.supernet_metric)
        if hasattr(self.objective, "check"):  # e.g. a supernet of another space, refused before the study opens
            self.objective.check(space)
        self.spec = StudySpec(space=space.name, space_fingerprint=space_fingerprint(space),
                              objective=self.objective.name,
                              target_ms=float(s.target_ms), mode=s.mode, latency_profile=latency.profile.id)
        self.run_dir = Path(s.run_dir) if s.run_dir else default_run_dir(space, s.target_ms)
        self.storage_url = storage_url(s.storage, self.run_dir)
        # Shared mode: workers ask and tell on the stored study (nas.search.shared); else one process
        # samples from an in-memory copy and writes finished trials in batches.
        self.shared = s.workers is not None or is_server(self.storage_url)
        self.me = worker_id()
        self.sampler = make_sampler(s.sampler, shared_seed(s.seed, self.me) if self.shared else s.seed,
                                    len(self.spec.directions), s.n_trials, shared=self.shared)
        self.study_name = s.study_name or self.run_dir.name
        self._decisions = [(d.name, list(d.choices)) for d in decisions(space)]
        self._metrics_cache: dict[Any, tuple[Metrics, str]] = {}
        self._objective_cache: dict[Any, float] = {}
        # Shared mode: objectives other workers computed, by architecture code, so that an architecture
        # the sampler draws again is not scored twice by the study (see `_learn`).
        self._objective_by_code: dict[str, float] = {}
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
    def _metrics(self, values: dict[str, Any]) -> tuple[Any, Metrics, str]:
        """The canonical architecture, its cheap metrics (table costs and latency) and its code."""
        arch = canonical(self.space, values)
        hit = self._metrics_cache.get(arch)
        if hit is None:
            macs, params = self.cost.macs_params(self.space, arch)
            hit = Metrics(macs=macs, params=params, latency_ms=self.predict_ms(arch)), encode(self.space, arch)
            self._metrics_cache[arch] = hit
        return (arch, *hit)

    def score(self, values: dict[str, Any]) -> tuple[Metrics, float, str]:
        """Metrics, objective and code of an architecture; equal networks are scored once (in shared mode,
        once by the whole study: a score another worker stored is taken)."""
        metrics, objective, code, _ = self._score(values)
        return metrics, objective, code

    def _score(self, values: dict[str, Any]) -> tuple[Metrics, float, str, bool]:
        """`score`, and whether the objective was taken from an earlier trial instead of computed."""
        arch, metrics, code = self._metrics(values)
        objective = self._objective_cache.get(arch, self._objective_by_code.get(code))
        if objective is None:
            objective = self._objective_cache[arch] = float(self.objective.score(self.space, arch, metrics))
            return metrics, objective, code, False
        return metrics, objective, code, True

    def _learn(self, trial: FrozenTrial) -> None:
        """Shared mode: keep the objective of a COMPLETE trial (any worker's) for its architecture."""
        code, objective = trial.user_attrs.get("arch"), trial.user_attrs.get("objective")
        if isinstance(code, str) and isinstance(objective, (int, float)):
            self._objective_by_code.setdefault(code, float(objective))

    def _evaluate(self, trial: optuna.Trial) -> tuple[list[float], bool]:
        return self._finish(trial, self._suggest(trial))

    def _suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Every decision of the space, drawn by the sampler."""
        return {name: trial.suggest_categorical(name, choices) for name, choices in self._decisions}

    def _suggest_described(self, trial: optuna.Trial) -> dict[str, Any]:
        """Shared mode: the drawn decisions, with what is known before the objective runs (costs, predicted
        latency, code, the constraint) already set, so the stored trial is written with them in one call
        (every attribute written later is one more database commit: about 25 ms each on PostgreSQL here)."""
        values = self._suggest(trial)
        _, metrics, code = self._metrics(values)
        self._describe(trial, metrics, code)
        return values

    def _upper_ms(self, metrics: Metrics) -> float:
        """The latency the constraint judges: the prediction with the margin."""
        return metrics.latency_ms * (1 + self.margin)

    def _describe(self, trial: optuna.Trial, metrics: Metrics, code: str) -> float:
        """Set a trial's cost, latency and code attributes and its latency constraint; its upper latency."""
        upper = self._upper_ms(metrics)
        for key, value in (("macs", metrics.macs), ("params", metrics.params),
                           ("predicted_latency_ms", metrics.latency_ms), ("latency_upper_ms", upper), ("arch", code)):
            trial.set_user_attr(key, value)
        trial.set_constraint(CONSTRAINT, upper - self.spec.target_ms)
        return upper

    def _finish(self, trial: optuna.Trial, values: dict[str, Any]) -> tuple[list[float], bool]:
        """Score drawn decisions into the trial's attributes and constraint: objective values, feasible."""
        metrics, objective, code, reused = self._score(values)
        # Shared mode described the trial when it was drawn; setting its constraint again would make
        # Optuna warn (and ignore the same value) once per worker.
        upper = self._upper_ms(metrics) if self.shared else self._describe(trial, metrics, code)
        trial.set_user_attr("objective", objective)
        if reused:  # the architecture was scored before: its objective is taken, not computed again
            trial.set_user_attr("reused_score", True)
        if not self.shared:  # shared: set when the trial is claimed
            trial.set_user_attr("worker", self.me)
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

    def fit_if_needed(self, say: Callable[[str], None] | None = None, bars: Bars | None = None) -> None:
        """A table with no correction (a first search from an empty cache) gets one fitted on a few
        networks first, so predictions mean end-to-end latency, not a sum of blocks; the margin then
        follows the fit's residuals unless one was given. `bars(desc, unit)` may wrap its loops."""
        m, s = self.latency, self.settings
        if m.table.correction is not None or not s.fit or not m.measure_missing or m.profile.remote:
            return
        if say is not None:
            say(f"the latency table has no correction yet: measuring {s.fit} networks end to end to fit one "
                f"(once per table)")
        bar = bars or no_bars
        m.fit_correction(self.space, n=s.fit, passes=FIT_PASSES, progress=bar("fitting correction", "run"),
                         unit_progress=bar("measuring units", "unit"))
        self.fit_note = m.last_fit_note
        if s.latency_margin is None:
            self.margin = m.default_margin()

    def recalibrate(self, attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
        """After the winner check: rescale the table's correction by what the check measured
        (`nas.latency.fit.recalibrated`: its points' median measured / predicted, both at the table's
        level) and save the table, so the next search on it predicts as this one measured. Returns what
        changed (`correction_recalibrated` in summary.json), or None when the check confirmed the
        correction, measured too few points, or the table is not this machine's to change."""
        m = self.latency
        c = m.table.correction
        if c is None or not m.measure_missing or m.profile.remote or m.table.path is None:
            return None
        # The check's points carry the table's prediction as it is now, at this search's speed
        # (`nas.search.verify.repredicted`), even a resumed study's earlier trials: back to the level.
        ratios = [p["measured_level_ms"] / (p["predicted_latency_ms"] / self.speed) for p in attempts
                  if p.get("measured_level_ms") and p.get("predicted_latency_ms")]
        new = recalibrated(c, ratios)
        if new is None:
            return None
        m.table.correction = new
        self._save_table()
        return {"factor": new.scale / c.scale, "networks": len(ratios), "scale": new.scale,
                "per_unit_ms": new.per_unit_ms, "offset_ms": new.offset_ms, "table": str(m.table.path)}

    @property
    def margin_note(self) -> str | None:
        """Why the default margin was capped (the table's residuals ask for more), if it was."""
        return margin_note(self.latency.table.correction) if self.settings.latency_margin is None else None

    def check_target(self) -> tuple[dict[str, Any], float]:
        """Refuse a target that no architecture found by a quick descent on the table can meet."""
        arch, ms = require_reachable(self.space, self.predict_ms, self.spec.target_ms, self.margin,
                                     self.latency.profile.id)
        self.fastest = {"arch": encode(self.space, arch), "predicted_latency_ms": ms}
        return arch, ms

    def checked_target(self, say: Callable[[str], None] | None = None, bars: Bars | None = None) -> float:
        """`check_target`, keeping the table entries it measured even when it fails."""
        try:
            with self._table_journal():
                self.fit_if_needed(say, bars)
                self.calibrate()
                self._start, ms = self.check_target()
        finally:
            self._save_table()
        return ms

    def cover_space(self, progress: Callable[[Any], Any] | None = None) -> int:
        """Measure every unit of the space the table lacks, so that in shared mode no worker measures while
        the others load the machine; returns how many were measured."""
        m = self.latency
        if not m.measure_missing or m.profile.remote:
            return 0
        try:
            return m.fill(self.space, list(unique_units(self.space).values()), progress)
        finally:
            self._save_table()

    def connect_early(self) -> None:
        """Open a storage given by `--storage` before the slow set-up (machine probe, correction fit,
        target check), so that a wrong URL or an unusable database is refused in seconds, not minutes.
        A file that opening would create (a new SQLite or journal file) waits for `open`, so that a
        refused target leaves no file behind."""
        url = self.storage_url
        if self.settings.storage is None or self.storage is not None or creates_a_file(url):
            return
        self.storage = storage_for(url)

    def open(self, *, create: bool = True) -> optuna.Study:
        """Create or resume the study (`create=False`: it must exist, as for a worker joining a run). Single
        process: earlier trials are loaded into the sampler's in-memory copy. Shared: the sampler works on
        the stored study, and the parent sets the budget (`start_shared`)."""
        if self.settings.storage is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.storage is None:  # not opened early by `connect_early`
            self.storage = storage_for(self.storage_url)
        self.study = open_study(self.spec, self.storage, self.storage_url, self.study_name, create=create)
        earlier = [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]
        for t in earlier:
            if t.state == TrialState.COMPLETE:
                self.stats.add(t.values[0], all(v <= 0 for v in t.constraints.values()), new=False)
        if not self.shared:  # shared: the sampler works on a mirror of the stored study (nas.search.shared)
            self.memory = optuna.create_study(directions=self.spec.directions, sampler=self.sampler)
            self.memory.add_trials(earlier)
        if create:
            self.study.set_user_attr(RUN_MODE_ATTR, "shared" if self.shared else "single")
        return self.study

    def start_shared(self) -> int:
        """Set the study's budget (its COMPLETE trials now plus `n_trials`) and enqueue the feasible start
        for an empty study; returns the budget. Run once, by whoever starts the workers."""
        complete = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        budget = complete + int(self.settings.n_trials or 0)
        self.study.set_user_attr(BUDGET_ATTR, budget)
        if not self.study.get_trials(deepcopy=False) and self._start:
            distributions = {name: CategoricalDistribution(choices) for name, choices in self._decisions}
            self.storage.create_new_trial(self.storage.get_study_id_from_name(self.study_name),
                                          template_trial=waiting_trial(dict(self._start), distributions))
        return budget

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> SearchOutcome:
        """Add up to `n_trials` trials (or until `timeout_s`), flushing to the storage as it goes."""
        if not self.fastest:
            self.checked_target()
        if self.study is None:
            self.open()
        if self.shared:
            return self._run_shared(progress)
        if self.stats.total == 0 and not self.memory.get_trials(deepcopy=False):
            self.memory.enqueue_trial(self._start)  # a feasible first trial gives every sampler a foothold
        batches = TrialBatches(self.memory, self.storage, self.study_name, self.settings.flush_every_s)
        result = run_trials(self.memory, self._evaluate, batches, self.stats, self.settings, progress=progress,
                            guard=self._table_journal, on_exit=self._save_table)
        return SearchOutcome(study=self.study, run_dir=self.run_dir, storage_url=self.storage_url, stats=self.stats,
                             elapsed_s=result.elapsed_s, interrupted=result.interrupted, fastest=self.fastest)

    def record_worker(self, table: str | None, *, may_measure: bool) -> None:
        """Say in the study which table and profile this worker scores with (`nas report` writes
        workers.json from it)."""
        t = self.latency.table
        self.study.set_user_attr(WORKER_ATTR_PREFIX + self.me, {
            "host": self.me.rsplit(":", 1)[0], "pid": os.getpid(), "table": table,
            "table_checksum": t.to_document()["checksum"], "entries": len(t), "profile": self.latency.profile.id,
            "may_measure": may_measure})

    def _run_shared(self, progress: Progress | None) -> SearchOutcome:
        if BUDGET_ATTR not in self.study.user_attrs:  # a search that runs its one worker itself
            self.start_shared()
        if WORKER_ATTR_PREFIX + self.me not in self.study.user_attrs:
            path = self.latency.table.path
            self.record_worker(str(path) if path else None, may_measure=self.latency.measure_missing)
        worker = WorkerLoop(self.study, self.storage, self.sampler, self.spec.directions, self.settings.grace_s,
                            me=self.me, on_complete=self._learn)
        result = run_shared(worker, self._suggest_described, self._finish, self.stats, self.settings, progress=progress,
                            guard=self._table_journal, on_exit=self._save_table)
        return SearchOutcome(study=self.study, run_dir=self.run_dir, storage_url=self.storage_url, stats=self.stats,
                             elapsed_s=result.elapsed_s, interrupted=result.interrupted, fastest=self.fastest)

    def settle_disturbed(self, retime: bool = True) -> dict[str, Any]:
        """After the trials: time again the units a busy machine kept slow through every try, so the
        table keeps calm figures for them, and say what happened (`TableTimer.settle_disturbed`)."""
        if not retime or not self.latency.disturbed_units:
            return self.latency.settle_disturbed(self.space, retime=retime)
        try:
            with self._table_journal():
                return self.latency.settle_disturbed(self.space)
        finally:
            self._save_table()

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
