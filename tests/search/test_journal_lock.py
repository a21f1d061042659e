"""The journal file's lock: exclusive across processes and threads, and gone the moment its holder is killed
(Optuna's lock files made the other workers wait 30 s; seen as a CI failure of the killed-worker test)."""
from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest

from nas.search.journal_lock import JournalFlock
from nas.search.storage import storage_for
from roots import ROOT

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from nas.search.journal_lock import JournalFlock
JournalFlock({path!r}).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(path: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), path=path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _acquire_in_thread(lock: JournalFlock) -> tuple[threading.Thread, threading.Event]:
    got = threading.Event()
    thread = threading.Thread(target=lambda: (lock.acquire(), got.set()), daemon=True)
    thread.start()
    return thread, got


def test_a_killed_holder_leaves_no_lock_behind(tmp_path) -> None:
    path = str(tmp_path / "study.journal")
    holder = _holder(path)
    lock = JournalFlock(path)
    try:
        thread, got = _acquire_in_thread(lock)
        assert not got.wait(0.5)  # another process holds it: we wait
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        killed = time.monotonic()
        assert got.wait(5.0)
        assert time.monotonic() - killed < 2.0  # not Optuna's 30 s grace period
    finally:
        if holder.poll() is None:
            holder.kill()
    lock.release()


def test_threads_of_one_process_take_turns(tmp_path) -> None:
    lock = JournalFlock(str(tmp_path / "j.journal"))
    assert lock.acquire() is True
    thread, got = _acquire_in_thread(lock)
    assert not got.wait(0.3)
    lock.release()
    assert got.wait(5.0)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()  # not held


def test_the_journal_storage_uses_it_and_still_pickles(tmp_path) -> None:
    storage = storage_for(str(tmp_path / "s.journal"))
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert (tmp_path / ".s.journal.flock").exists() and not (tmp_path / "s.journal.lock").exists()
    again = pickle.loads(pickle.dumps(storage))
    assert len(optuna.load_study(study_name="s", storage=again).trials) == 3
    optuna.load_study(study_name="s", storage=again).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 4
