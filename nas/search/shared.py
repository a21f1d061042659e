"""Shared (live) mode: several workers add trials to one stored study, through public Optuna API only.

Each worker samples from the study as it is in the storage now: before every
trial it brings an in-memory mirror up to the stored trials (every worker's
finished ones and the others' running ones, which TPE's constant liar
counts), its sampler asks there, and the trial is written to the storage
RUNNING with all its parameters in one `create_new_trial`, then finished with
its attributes and values. Rules:

- **Budget.** The study's user attribute `nas.budget` is the number of
  COMPLETE trials it should end with. A worker waits while COMPLETE plus
  RUNNING trials fill the budget, claims a trial otherwise, and then checks
  it: if the COMPLETE trials plus the RUNNING or WAITING trials numbered below
  it already fill the budget, the trial is marked FAIL with user attribute
  `fail_reason` = "over budget" before it is scored, and not counted. The
  storage hands out trial numbers in order, so of the trials that end
  COMPLETE the highest-numbered one saw every other one when it checked: no
  more than the budget can end COMPLETE, and workers go on until it is met.
- **Heartbeats.** While a trial runs, a thread writes the trial's system
  attribute `nas:heartbeat` (unix time) every `heartbeat_s`. Before claiming,
  a worker looks at the RUNNING trials: one whose heartbeat value has not
  changed for `grace_s` on this worker's own clock (so clocks of different
  machines need not agree) is set FAIL through the storage; only the worker
  whose FAIL write wins (the others get UpdateFinishedTrialError) adds a
  WAITING retry with the same parameters and user attribute `retry_of` = its
  number. A WAITING trial goes to the one worker whose
  `set_trial_state_values(RUNNING)` succeeds.
- **Workers.** Every trial carries user attributes `worker` (host:pid) and
  `others_complete` (the COMPLETE trials of other workers the sampler saw
  when the trial was drawn: the evidence that workers sample from each other).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

BUDGET_ATTR = "nas.budget"  # study user attr: COMPLETE trials the study should end with
RUN_MODE_ATTR = "nas.run_mode"  # study user attr: "shared" or "single"
WORKER_ATTR_PREFIX = "nas.worker:"  # study user attr per worker: host, pid, table, profile
HEARTBEAT = "nas:heartbeat"  # trial system attr
OVER_BUDGET = "over budget"
POLL_S = 0.5  # how often a waiting worker looks at the study again


def worker_id() -> str:
    """This worker: `host:pid`, and `host:pid-tN` (N: the thread's native id) off the main thread, where
    several workers may share a process (Dask tasks)."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    if threading.current_thread() is not threading.main_thread():
        me += f"-t{threading.get_native_id()}"
    return me


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
    """A thread that stamps the running trial's `nas:heartbeat` every `every_s` seconds and then calls
    `also` (the reaper: a worker busy with a long trial still fails dead workers' trials in time)."""

    def __init__(self, storage: optuna.storages.BaseStorage, every_s: float,
                 also: Callable[[], Any] = lambda: None) -> None:
        self.storage, self.every_s, self.also = storage, every_s, also
        self._trial_id: int | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nas-heartbeat", daemon=True)
        self._thread.start()

    def beat(self, trial_id: int, stamp_now: bool = True) -> None:
        """Keep stamping `trial_id` until `stop`, starting now unless it was written with a fresh stamp."""
        with self._lock:
            self._trial_id = trial_id
            if stamp_now:
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
            try:
                with self._lock:
                    if self._trial_id is not None:
                        self._stamp(self._trial_id)
                self.also()
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
        self._lock = threading.Lock()  # the worker's loop and its heartbeat thread both reap

    def reap_now(self) -> list[int]:
        """`reap` on the study as it is now."""
        return self.reap(self.study.get_trials(deepcopy=False))

    def reap(self, trials: list[optuna.trial.FrozenTrial]) -> list[int]:
        """The numbers of the trials this call failed and enqueued again."""
        with self._lock:
            return self._reap(trials)

    def _reap(self, trials: list[optuna.trial.FrozenTrial]) -> list[int]:
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
        self.storage.create_new_trial(self.study_id, template_trial=waiting_trial(
            dict(t.params), dict(t.distributions), retry_of=t.number))
        return True


@dataclass
class Claim:
    """A trial this worker scores: the sampler's trial in the mirror and its stored twin."""

    trial: optuna.Trial  # in the in-memory mirror, where the sampler asked it
    number: int  # in the stored study
    trial_id: int  # in the stored study
    # The attributes the stored trial was written with (tell writes only what changed since) and
    # whether it carries a fresh heartbeat.
    stored_user: dict[str, Any] = dataclasses.field(default_factory=dict)
    stored_system: dict[str, Any] = dataclasses.field(default_factory=dict)
    fresh: bool = False


def waiting_trial(params: dict[str, Any], distributions: dict[str, Any], **user_attrs: Any) -> FrozenTrial:
    """A WAITING trial with its parameters, for `create_new_trial`: a retry, or the feasible first trial."""
    return optuna.trial.create_trial(state=TrialState.WAITING, params=params, distributions=distributions,
                                     user_attrs=user_attrs)


class WorkerLoop:
    """One worker's trials on a stored study (see the module's rules).

    The sampler asks in an in-memory mirror of the stored study, synced before every ask: every
    worker's finished trials, and the others' RUNNING ones with their parameters (TPE's constant
    liar counts them). The claimed trial is written to the storage RUNNING with all its parameters
    in one write, and finished with its attributes and values; asking on the storage itself writes
    each of sandglass.yaml's 111 parameters separately (444 ms a trial on a journal file here,
    against about 20 ms this way).
    """

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler,
                 directions: list[str], grace_s: float, me: str = "",
                 on_complete: Callable[[FrozenTrial], Any] = lambda trial: None) -> None:
        self.study, self.storage, self.me = study, storage, me or worker_id()
        self.on_complete = on_complete  # hears every COMPLETE trial as it reaches the mirror
        self.reaper = Reaper(study, storage, grace_s)
        self.study_id = self.reaper.study_id
        self._mem = optuna.storages.InMemoryStorage()
        self.memory = optuna.create_study(storage=self._mem, sampler=sampler, directions=directions)
        self._mem_id = self._mem.get_study_id_from_name(self.memory.study_name)
        self._running: dict[int, int] = {}  # stored number -> mirror trial id, while it runs elsewhere
        self._known: set[int] = set()  # stored numbers mirrored as finished, or this worker's own

    def budget(self) -> int:
        return int(self.study.user_attrs[BUDGET_ATTR])

    def _sync(self, trials: list[FrozenTrial]) -> None:
        """Bring the mirror up to the stored trials (WAITING ones are not the sampler's business)."""
        for t in trials:
            if t.number in self._known or t.state == TrialState.WAITING:
                continue
            mid = self._running.get(t.number)
            if mid is None:
                mid = self._mem.create_new_trial(self._mem_id, template_trial=t)
            elif t.state.is_finished():
                for key, value in t.system_attrs.items():
                    self._mem.set_trial_system_attr(mid, key, value)
                for key, value in t.user_attrs.items():
                    self._mem.set_trial_user_attr(mid, key, value)
                self._mem.set_trial_state_values(mid, t.state, t.values)
            if t.state.is_finished():
                self._running.pop(t.number, None)
                self._known.add(t.number)
                if t.state == TrialState.COMPLETE:
                    self.on_complete(t)
            else:
                self._running[t.number] = mid

    def next_trial(self, should_stop: Callable[[], bool],
                   suggest: Callable[[optuna.Trial], dict[str, Any]]) -> Claim | None:
        """The next trial to score, its parameters suggested by `suggest`, or None when the budget is met (or
        `should_stop`)."""
        while not should_stop():
            budget = self.budget()
            trials = self.study.get_trials(deepcopy=False)
            if self.reaper.reap(trials):
                continue  # read again: the retries are WAITING now
            now = count(trials, self.me)
            if now.complete >= budget:
                return None
            if now.complete + now.running >= budget:  # the rest is in flight: wait for it to end or die
                time.sleep(POLL_S)
                continue
            self._sync(trials)
            claim = self._pop_waiting(trials, suggest) or self._create(suggest, now.others_complete)
            self._known.add(claim.number)
            seen = count(self.study.get_trials(deepcopy=False), self.me, below=claim.number)
            if seen.complete + seen.running >= budget:
                self.storage.set_trial_user_attr(claim.trial_id, "fail_reason", OVER_BUDGET)
                self.fail(claim)
                continue
            if "others_complete" not in claim.stored_user:
                self.storage.set_trial_user_attr(claim.trial_id, "others_complete", now.others_complete)
            return claim
        return None

    def _pop_waiting(self, trials: list[FrozenTrial], suggest: Callable[[optuna.Trial], dict[str, Any]]
                     ) -> Claim | None:
        """A WAITING trial (a retry, the first trial) this worker won the right to run, or None."""
        for t in trials:
            if t.state != TrialState.WAITING:
                continue
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
            if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                continue  # another worker popped it first
            self.memory.enqueue_trial(dict(t.params))
            trial = self.memory.ask()
            params = suggest(trial)
            for name, value in params.items():  # one enqueued without parameters (rare) gets them now
                if name not in t.params:
                    dist = trial.distributions[name]
                    self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
            self.storage.set_trial_user_attr(trial_id, "worker", self.me)
            return Claim(trial, t.number, trial_id)
        return None

    def _create(self, suggest: Callable[[optuna.Trial], dict[str, Any]], others_complete: int) -> Claim:
        """A new trial drawn in the mirror, stored RUNNING in one write with its parameters and every
        attribute `suggest` set on it (each later attribute is one more write)."""
        trial = self.memory.ask()
        params = suggest(trial)
        drawn = self._mem.get_trial(self._mem.get_trial_id_from_study_id_trial_number(self._mem_id, trial.number))
        user = {**drawn.user_attrs, "worker": self.me, "others_complete": others_complete}
        system = {**drawn.system_attrs, HEARTBEAT: time.time()}
        template = optuna.trial.create_trial(state=TrialState.RUNNING, params=params,
                                             distributions=trial.distributions, user_attrs=user, system_attrs=system)
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
        return Claim(trial, self.storage.get_trial_number_from_id(trial_id), trial_id, user, system, fresh=True)

    def tell(self, claim: Claim, values: list[float]) -> bool:
        """Store the finished trial (attributes set while scoring, values); False when another worker had
        judged it dead and failed it meanwhile (its retry counts instead)."""
        frozen = self.memory.tell(claim.trial, values)
        try:
            for key, value in frozen.user_attrs.items():
                if claim.stored_user.get(key, claim) != value:  # (claim: a value no attribute has)
                    self.storage.set_trial_user_attr(claim.trial_id, key, value)
            for key, value in frozen.system_attrs.items():
                if claim.stored_system.get(key, claim) != value:
                    self.storage.set_trial_system_attr(claim.trial_id, key, value)
            self.storage.set_trial_state_values(claim.trial_id, TrialState.COMPLETE, values)
        except UpdateFinishedTrialError:
            return False
        return True

    def fail(self, claim: Claim) -> None:
        self.memory.tell(claim.trial, state=TrialState.FAIL)
        try:
            self.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass
