"""The trial loop: Optuna asks, the objective answers, finished trials reach the storage in batches.

The loop runs on an in-memory copy of the study and hands finished trials to
`TrialBatches`, which writes them every couple of seconds and once more on
exit, Ctrl-C and SIGTERM included: a signal asks the loop to stop after the
trial in flight, and the final write runs with Ctrl-C ignored. A hard kill
loses at most the last batch.
"""
from __future__ import annotations

import signal
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import optuna

from nas.search.settings import SearchSettings
from nas.search.shared import Heartbeat, WorkerLoop
from nas.search.storage import TrialBatches


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


class Progress(Protocol):
    """What the loop tells a display (the CLI's bar or log lines)."""

    def start(self, total: int | None, stats: SearchStats) -> None: ...
    def update(self, stats: SearchStats) -> None: ...
    def close(self, stats: SearchStats) -> None: ...


@dataclass(frozen=True)
class LoopResult:
    elapsed_s: float
    interrupted: bool


# Scores one asked trial: its objective values and whether it meets the target.
Evaluate = Callable[[optuna.Trial], tuple[list[float], bool]]
# Scores a trial whose parameters were drawn already.
Finish = Callable[[optuna.Trial, dict[str, Any]], tuple[list[float], bool]]


def run_trials(memory: optuna.Study, evaluate: Evaluate, batches: TrialBatches, stats: SearchStats,
               settings: SearchSettings, *, progress: Progress | None = None,
               guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
               on_exit: Callable[[], None] = lambda: None) -> LoopResult:
    """Add trials until `settings.n_trials` new ones, `settings.timeout_s` or a stop signal, whichever
    comes first. `guard` wraps the trials (the table's journal); `on_exit` runs after the final write,
    also when interrupted."""
    began = time.perf_counter()
    interrupted = False
    if progress:
        progress.start(settings.n_trials, stats)
    try:
        with guard(), stop_signals() as stop:
            while _more(settings, stats, began) and not stop.requested:
                trial = memory.ask()
                values, feasible = evaluate(trial)
                frozen = memory.tell(trial, values)
                batches.add(frozen.number)
                stats.add(values[0], feasible)
                if progress:
                    progress.update(stats)
                batches.flush_if_due()
            interrupted = stop.requested
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with _sigint_ignored():  # a second Ctrl-C must not cut the final write short
            batches.flush()
            on_exit()
            if progress:
                progress.close(stats)
    return LoopResult(elapsed_s=time.perf_counter() - began, interrupted=interrupted)


def run_shared(worker: WorkerLoop, suggest: Callable[[optuna.Trial], dict[str, Any]], finish: Finish,
               stats: SearchStats, settings: SearchSettings, *, progress: Progress | None = None,
               guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
               on_exit: Callable[[], None] = lambda: None) -> LoopResult:
    """Claim and score trials of the stored study until its budget of COMPLETE trials is met (by all workers
    together), `settings.timeout_s` or a stop signal; the running trial carries a heartbeat
    (`nas.search.shared`). `suggest` draws a trial's parameters, `finish` scores them."""
    began = time.perf_counter()
    interrupted = False
    heartbeat = Heartbeat(worker.storage, settings.heartbeat_s, also=worker.reaper.reap_now)
    if progress:
        progress.start(worker.budget(), stats)

    try:
        with guard(), stop_signals() as stop:
            def should_stop() -> bool:
                return stop.requested or (settings.timeout_s is not None
                                          and time.perf_counter() - began >= settings.timeout_s)

            while (claim := worker.next_trial(should_stop, suggest)) is not None:
                heartbeat.beat(claim.trial_id, stamp_now=not claim.fresh)
                try:
                    values, feasible = finish(claim.trial, claim.trial.params)
                except BaseException:
                    heartbeat.stop()
                    worker.fail(claim)
                    raise
                heartbeat.stop()
                if worker.tell(claim, values):  # False: judged dead and failed meanwhile; its retry counts
                    stats.add(values[0], feasible)
                    if progress:
                        progress.update(stats)
            interrupted = stop.requested
    except KeyboardInterrupt:
        interrupted = True
    finally:
        heartbeat.close()
        with _sigint_ignored():
            on_exit()
            if progress:
                progress.close(stats)
    return LoopResult(elapsed_s=time.perf_counter() - began, interrupted=interrupted)


def _more(settings: SearchSettings, stats: SearchStats, began: float) -> bool:
    return (settings.n_trials is None or stats.new < settings.n_trials) and \
        (settings.timeout_s is None or time.perf_counter() - began < settings.timeout_s)


class _StopRequest:
    requested = False


@contextmanager
def stop_signals() -> Iterator[_StopRequest]:
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
