"""The search loop: Optuna asks, the cost tables answer, finished trials reach the storage in batches.

Sampling runs on an in-memory copy of the study (loaded from the storage when
resuming) and finished trials are written to the storage every couple of
seconds and on exit, Ctrl-C included (see `nas.search.storage` for why).
A hard kill loses at most the last batch.
"""
from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import optuna
from optuna.trial import TrialState

from nas.cost import CostModel
from nas.errors import NasError
from nas.latency import LatencyModel
from nas.search.fastest import fastest_arch
from nas.search.objectives import Metrics, get_objective
from nas.search.samplers import make_sampler
from nas.search.storage import add_trials_bulk
from nas.search.study import StudySpec, open_study, space_fingerprint
from nas.search.target import TargetError, format_latency
from nas.space import SearchSpace, canonical, decisions, encode

CONSTRAINT = "latency_ms"  # constraint value: upper predicted latency minus target (feasible when <= 0)
FIT_NETWORKS = 12  # networks a search measures end to end to fit a correction when its table has none
FIT_PASSES = 2
MODES = ("multi", "single")


class TargetUnreachableError(TargetError):
    """No architecture the table could find meets the target."""


@dataclass
class SearchSettings:
    """Everything `nas search` takes besides the space and the latency table."""

    target_ms: float
    objective: str = "macs"
    sampler: str = "auto"
    mode: str = "multi"
    seed: int | None = 0
    n_trials: int | None = 100
    timeout_s: float | None = None
    run_dir: str | Path | None = None
    storage: str | None = None
    study_name: str | None = None
    flush_every_s: float = 2.0
    data: str | None = None  # --objective trained: digits or an image folder
    epochs: int | None = None
    # Feasible means predicted * (1 + margin) <= target, so that a maximiser is not drawn to the networks
    # the table under-predicts. None: the table's own figure (LatencyModel.default_margin).
    latency_margin: float | None = None
    fit: int = FIT_NETWORKS  # networks to fit a correction on first when the table has none (0: none)


@dataclass
class SearchStats:
    """Running totals for the progress bar (earlier trials of a resumed study included)."""

    new: int = 0
    total: int = 0
    feasible: int = 0
    best: float | None = None

    def add(self, objective: float, feasible: bool, new: bool = True) -> None:
        self.total += 1
        self.new += int(new)
        if feasible:
            self.feasible += 1
            self.best = objective if self.best is None else max(self.best, objective)


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


class Progress(Protocol):
    def start(self, total: int | None, stats: SearchStats) -> None: ...
    def update(self, stats: SearchStats) -> None: ...
    def close(self, stats: SearchStats) -> None: ...


def default_run_dir(space: SearchSpace, target_ms: float) -> Path:
    return Path("runs") / f"{space.name}-{format_latency(target_ms)}"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


class Search:
    """One search: validated settings, the study (created or resumed) and the loop."""

    def __init__(self, space: SearchSpace, settings: SearchSettings, latency: LatencyModel,
                 cost: CostModel | None = None) -> None:
        s = settings
        if not (isinstance(s.target_ms, (int, float)) and math.isfinite(s.target_ms) and s.target_ms > 0):
            raise TargetError(f"--target-latency: {s.target_ms!r} is not a positive latency")
        if s.mode not in MODES:
            raise NasError(f"mode: {s.mode!r} is not one of {', '.join(MODES)}")
        if s.n_trials is not None and s.n_trials < 1:
            raise NasError(f"--n-trials: {s.n_trials} is not a positive number of trials")
        if s.timeout_s is not None and s.timeout_s <= 0:
            raise NasError(f"--timeout: {s.timeout_s} is not a positive number of seconds")
        if s.latency_margin is not None and not (isinstance(s.latency_margin, (int, float))
                                                 and math.isfinite(s.latency_margin) and 0 <= s.latency_margin < 1):
            raise NasError(f"--latency-margin: {s.latency_margin!r} is not a fraction in [0, 1), e.g. 0.05 for 5%")
        if s.fit != 0 and (isinstance(s.fit, bool) or not isinstance(s.fit, int) or s.fit < 4):
            raise NasError(f"--fit: {s.fit!r} is not 0 or a number of networks >= 4")
        self.space, self.settings, self.latency = space, s, latency
        self.cost = cost or CostModel.persistent()
        self.objective = get_objective(s.objective, seed=s.seed or 0, data=s.data, epochs=s.epochs)
        self.spec = StudySpec(space=space.name, space_fingerprint=space_fingerprint(space),
                              objective=self.objective.name,
                              target_ms=float(s.target_ms), mode=s.mode, latency_profile=latency.profile.id)
        n_objectives = len(self.spec.directions)
        self.sampler = make_sampler(s.sampler, s.seed, n_objectives, s.n_trials)
        self.run_dir = Path(s.run_dir) if s.run_dir else default_run_dir(space, s.target_ms)
        self.storage_url = s.storage or sqlite_url(self.run_dir / "study.db")
        self.study_name = s.study_name or self.run_dir.name
        self._decisions = [(d.name, list(d.choices)) for d in decisions(space)]
        self._cache: dict[Any, tuple[Metrics, float, str]] = {}
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

    def _evaluate(self, trial: optuna.Trial) -> list[float]:
        values = {name: trial.suggest_categorical(name, choices) for name, choices in self._decisions}
        metrics, objective, code = self.score(values)
        upper = metrics.latency_ms * (1 + self.margin)
        for key, value in (("macs", metrics.macs), ("params", metrics.params),
                           ("predicted_latency_ms", metrics.latency_ms), ("latency_upper_ms", upper),
                           ("objective", objective), ("arch", code)):
            trial.set_user_attr(key, value)
        trial.set_constraint(CONSTRAINT, upper - self.spec.target_ms)
        return [objective, metrics.latency_ms] if self.spec.mode == "multi" else [objective]

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
        budget = self.spec.target_ms / (1 + self.margin)
        arch, ms = fastest_arch(self.space, self.predict_ms, budget)
        self.fastest = {"arch": encode(self.space, arch), "predicted_latency_ms": ms}
        if ms > budget:
            margin = f" with a {self.margin:.1%} latency margin" if self.margin else ""
            hint = "; lower --latency-margin or raise the target" if self.margin else ""
            raise TargetUnreachableError(
                f"no architecture in {self.space.file} meets {format_latency(self.spec.target_ms)} on "
                f"{self.latency.profile.id}{margin}: the smallest predicted is {ms:.2f} ms "
                f"({encode(self.space, arch)}){hint}")
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
        self.study = open_study(self.spec, self.storage_url, self.study_name)
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
        s = self.settings
        pending: list[int] = []
        last_flush = began = time.perf_counter()
        interrupted = False
        if progress:
            progress.start(s.n_trials, self.stats)
        try:
            with self._table_journal(), _stop_signals() as stop:
                while (s.n_trials is None or self.stats.new < s.n_trials) and \
                        (s.timeout_s is None or time.perf_counter() - began < s.timeout_s) and not stop.requested:
                    trial = self.memory.ask()
                    values = self._evaluate(trial)
                    frozen = self.memory.tell(trial, values)
                    pending.append(frozen.number)
                    self.stats.add(values[0], frozen.user_attrs["latency_upper_ms"] <= self.spec.target_ms)
                    if progress:
                        progress.update(self.stats)
                    if time.perf_counter() - last_flush >= s.flush_every_s:
                        self._flush(pending)
                        last_flush = time.perf_counter()
                interrupted = stop.requested
        except KeyboardInterrupt:
            interrupted = True
        finally:
            with _sigint_ignored():  # a second Ctrl-C must not cut the final write short
                self._flush(pending)
                self._save_table()
                if progress:
                    progress.close(self.stats)
        return SearchOutcome(study=self.study, run_dir=self.run_dir, storage_url=self.storage_url, stats=self.stats,
                             elapsed_s=time.perf_counter() - began, interrupted=interrupted, fastest=self.fastest)

    def _flush(self, pending: list[int]) -> None:
        if not pending:
            return
        trials = self.memory.get_trials(deepcopy=False)
        add_trials_bulk(self.study, [trials[n] for n in pending])
        pending.clear()

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


class _StopRequest:
    requested = False


@contextmanager
def _stop_signals() -> Iterator[_StopRequest]:
    """Ctrl-C or SIGTERM asks the loop to stop after the trial in flight (checked between trials, so no
    library code can swallow it); a second Ctrl-C interrupts at once."""
    stop = _StopRequest()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True

    try:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay with whoever owns them
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to guard
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
