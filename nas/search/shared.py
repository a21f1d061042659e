"""Shared (live) mode: every worker asks and tells on the stored study itself, through public Optuna API.

Each worker samples from the study as it is in the storage now: the finished
trials of every worker and, for TPE (constant liar), the running ones. Three
rules keep several workers honest:

- **Budget.** The study's user attribute `nas.budget` is the number of
  COMPLETE trials it should end with. A worker waits while COMPLETE plus
  RUNNING trials fill the budget, asks otherwise, and then checks its trial:
  if the COMPLETE trials plus the RUNNING or WAITING trials numbered below it
  already fill the budget, the trial is told FAIL with user attribute
  `fail_reason` = "over budget" before it is scored, and not counted. Trial
  numbers are handed out in order by the storage, so of the trials that end
  COMPLETE the highest-numbered one saw every other one when it checked: no
  more than the budget can end COMPLETE, and workers go on until it is met.
- **Heartbeats.** While a trial runs, a thread writes the trial's system
  attribute `nas:heartbeat` (unix time) every `heartbeat_s`. Before asking,
  a worker looks at the RUNNING trials: one whose heartbeat value has not
  changed for `grace_s` on this worker's own clock (so clocks of different
  machines need not agree) is told FAIL through the storage; only the worker
  whose FAIL write wins (the others get UpdateFinishedTrialError) enqueues
  its parameters again, with user attribute `retry_of` = its number.
- **Workers.** Every trial carries user attributes `worker` (host:pid) and
  `others_complete` (the COMPLETE trials of other workers in the study when it
  was asked: the evidence that workers sample from each other).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

BUDGET_ATTR = "nas.budget"  # study user attr: COMPLETE trials the study should end with
RUN_MODE_ATTR = "nas.run_mode"  # study user attr: "shared" or "single"
WORKER_ATTR_PREFIX = "nas.worker:"  # study user attr per worker: host, pid, table, profile
HEARTBEAT = "nas:heartbeat"  # trial system attr
OVER_BUDGET = "over budget"
POLL_S = 0.5  # how often a waiting worker looks at the study again


def worker_id() -> str:
    """This process as a worker: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Counts:
    """What one read of the study says about the budget."""

    complete: int
    running: int
    others_complete: int


def count(trials: list[optuna.trial.FrozenTrial], me: str, below: int | None = None) -> Counts:
    """COMPLETE trials, RUNNING trials (and, with `below`, RUNNING or WAITING ones numbered below it),
    and COMPLETE trials of workers other than `me`."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if below is None:
        running = sum(t.state == TrialState.RUNNING for t in trials)
    else:
        running = sum(t.number < below and t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    others = sum(t.user_attrs.get("worker") != me for t in complete)
    return Counts(len(complete), running, others)


class Heartbeat:
    """A thread that stamps the running trial's `nas:heartbeat` every `every_s` seconds."""

    def __init__(self, storage: optuna.storages.BaseStorage, every_s: float) -> None:
        self.storage, self.every_s = storage, every_s
        self._trial_id: int | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nas-heartbeat", daemon=True)
        self._thread.start()

    def beat(self, trial_id: int) -> None:
        """Stamp `trial_id` now and keep stamping it until `stop`."""
        with self._lock:
            self._trial_id = trial_id
            self._stamp(trial_id)

    def stop(self) -> None:
        with self._lock:
            self._trial_id = None

    def _stamp(self, trial_id: int) -> None:
        try:
            self.storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
        except UpdateFinishedTrialError:  # another worker judged this trial dead and failed it
            self._trial_id = None

    def _run(self) -> None:
        while not self._wake.wait(self.every_s):
            with self._lock:
                if self._trial_id is not None:
                    try:
                        self._stamp(self._trial_id)
                    except Exception:  # a storage hiccup: the next beat tries again, the grace period allows it
                        pass

    def close(self) -> None:
        self.stop()
        self._wake.set()


class Reaper:
    """Fails RUNNING trials whose heartbeat stood still for `grace_s` and enqueues each once for a retry."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, grace_s: float) -> None:
        self.study, self.storage, self.grace_s = study, storage, grace_s
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self._seen: dict[int, tuple[Any, float]] = {}  # number -> (heartbeat value, when this worker first saw it)

    def reap(self, trials: list[optuna.trial.FrozenTrial]) -> list[int]:
        """The numbers of the trials this call failed and enqueued again."""
        now, failed = time.monotonic(), []
        running = {t.number: t for t in trials if t.state == TrialState.RUNNING}
        self._seen = {n: v for n, v in self._seen.items() if n in running}
        for number, t in running.items():
            beat = t.system_attrs.get(HEARTBEAT)
            last = self._seen.get(number)
            if last is None or last[0] != beat:
                self._seen[number] = (beat, now)
            elif now - last[1] >= self.grace_s and self._fail(t):
                failed.append(number)
        return failed

    def _fail(self, t: optuna.trial.FrozenTrial) -> bool:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
        try:
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker's FAIL (or the trial's own tell) came first
            return False
        self.study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
        return True


# Scores one asked trial: its objective values and whether it meets the target.
Evaluate = Callable[[optuna.Trial], tuple[list[float], bool]]


@dataclass
class WorkerLoop:
    """One worker's ask/tell loop on a stored study (see the module's rules)."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    heartbeat_s: float
    grace_s: float
    me: str = ""

    def __post_init__(self) -> None:
        self.me = self.me or worker_id()
        self.reaper = Reaper(self.study, self.storage, self.grace_s)
        self.study_id = self.reaper.study_id

    def budget(self) -> int:
        return int(self.study.user_attrs[BUDGET_ATTR])

    def next_trial(self, should_stop: Callable[[], bool]) -> optuna.Trial | None:
        """The next trial to score, or None when the budget is met (or `should_stop`)."""
        while not should_stop():
            budget = self.budget()
            trials = self.study.get_trials(deepcopy=False)
            self.reaper.reap(trials)
            now = count(trials, self.me)
            if now.complete >= budget:
                return None
            if now.complete + now.running >= budget:  # the rest is in flight: wait for it to end or die
                time.sleep(POLL_S)
                continue
            trial = self.study.ask()
            seen = count(self.study.get_trials(deepcopy=False), self.me, below=trial.number)
            trial.set_user_attr("worker", self.me)
            if seen.complete + seen.running >= budget:
                trial.set_user_attr("fail_reason", OVER_BUDGET)
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            trial.set_user_attr("others_complete", seen.others_complete)
            return trial
        return None

    def trial_id(self, trial: optuna.Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
