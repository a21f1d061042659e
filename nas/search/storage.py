"""Optuna storage for searches: opened with a clear error, written through Optuna's public API.

A storage is named by a SQLAlchemy URL (`sqlite:///run/study.db`,
`postgresql+psycopg://...`) or by a JournalStorage file: `journal:PATH` or a
path ending in `.journal`. A journal file appends one log line per write, so
a finished trial costs about 1.5 ms through the public `create_new_trial`
against 83 ms on SQLite (README, benchmarks/storage_cost.py): it is the
default for new run folders, and it is safe for several processes of one
machine (`journal_lock`: a flock the kernel drops when its holder dies, so a
killed worker leaves no lock behind). A single process samples from an
in-memory copy of the study and `TrialBatches` copies finished trials to the
storage every couple of seconds.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial

from nas.search.connect import StorageError, error_line, open_storage  # noqa: F401  (re-exported)
from nas.search.journal_lock import journal_lock


JOURNAL_PREFIX = "journal:"
JOURNAL_SUFFIX = ".journal"


def is_journal(url: str) -> bool:
    """True when `url` names a JournalStorage file (`journal:PATH` or a path ending in `.journal`)."""
    return url.startswith(JOURNAL_PREFIX) or (url.endswith(JOURNAL_SUFFIX) and "://" not in url)


def journal_url(path: str | Path) -> str:
    """The canonical name of a journal file storage: `journal:` and the absolute path."""
    return JOURNAL_PREFIX + str(Path(path).resolve())


def journal_path(url: str) -> Path:
    """The file a journal storage name (`journal:PATH` or `PATH.journal`) points to."""
    return Path(url.removeprefix(JOURNAL_PREFIX))


def creates_a_file(url: str) -> bool:
    """True when opening `url` would create a file: a SQLite or journal file that does not exist yet."""
    if is_journal(url):
        return not journal_path(url).exists()
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        return path != ":memory:" and not Path(path).exists()
    return False


def is_server(url: str) -> bool:
    """True for a database server URL (PostgreSQL, MySQL): several machines can share it."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres", "mysql")


def storage_for(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage a `--storage` value names: a journal file, or any SQLAlchemy URL (`open_storage`)."""
    if not is_journal(url):
        return open_storage(url)
    path = journal_path(url)
    if not path.parent.is_dir():
        raise StorageError(f"cannot open storage {url!r}: folder {path.parent} does not exist")
    try:
        backend = optuna.storages.journal.JournalFileBackend(str(path), lock_obj=journal_lock(str(path)))
        return optuna.storages.JournalStorage(backend)
    except Exception as exc:  # a damaged log, a file we may not read
        raise StorageError(f"cannot open storage {url!r}: {error_line(exc)}") from None


def add_trials_bulk(storage: optuna.storages.BaseStorage, study_name: str, trials: Sequence[FrozenTrial]) -> None:
    """Append finished `trials` to study `study_name` of `storage` through Optuna's public
    `create_new_trial(template_trial=...)` (numbers follow the study's count)."""
    if not trials:
        return
    study_id = storage.get_study_id_from_name(study_name)
    for t in trials:
        storage.create_new_trial(study_id, template_trial=t)


class TrialBatches:
    """Finished trials of an in-memory study, copied to a stored study every `every_s` seconds."""

    def __init__(self, memory: optuna.Study, storage: optuna.storages.BaseStorage, study_name: str,
                 every_s: float) -> None:
        self.memory, self.storage, self.study_name, self.every_s = memory, storage, study_name, every_s
        self.pending: list[int] = []
        self.last = time.perf_counter()

    def add(self, number: int) -> None:
        """Queue trial `number` of the in-memory study."""
        self.pending.append(number)

    def flush_if_due(self) -> None:
        if time.perf_counter() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Write what is queued now."""
        if self.pending:
            trials = self.memory.get_trials(deepcopy=False)
            add_trials_bulk(self.storage, self.study_name, [trials[n] for n in self.pending])
            self.pending.clear()
        self.last = time.perf_counter()
