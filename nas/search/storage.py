"""Optuna storage for searches: opened with a clear error, written in batches.

Sampling runs against an in-memory copy of the study, and finished trials are
copied to the persistent storage (SQLite by default) in batches. Optuna's own
`RDBStorage` writes a trial with one transaction and a query per parameter and
attribute: a 111-decision sandglass trial costs several milliseconds, a large
share of a search whose trials are scored from tables. `add_trials_bulk`
writes a whole batch in one transaction through Optuna's own table models
(`optuna.storages._rdb.models`): this module is the one place in the toolkit
that touches Optuna internals, and it falls back to the public
`BaseStorage.create_new_trial` for storages that are not relational.
"""
from __future__ import annotations

import json
import time
from datetime import timezone
from typing import Sequence

import optuna
from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial

from nas.search.connect import StorageError, open_storage  # noqa: F401  (re-exported: callers import them here)


def add_trials_bulk(storage: optuna.storages.BaseStorage, study_name: str, trials: Sequence[FrozenTrial]) -> None:
    """Append finished `trials` to study `study_name` of `storage` in one transaction (numbers follow the
    study's count)."""
    if not trials:
        return
    study_id = storage.get_study_id_from_name(study_name)
    if not isinstance(storage, optuna.storages.RDBStorage):
        for t in trials:
            storage.create_new_trial(study_id, template_trial=t)
        return
    from optuna.storages._rdb import models
    from sqlalchemy import func, insert

    def utc(when):  # the RDB schema stores naive UTC
        return None if when is None else when.astimezone(timezone.utc).replace(tzinfo=None)

    session = storage.scoped_session()
    try:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        base = session.query(func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == study_id).scalar()
        conn = session.connection()
        params, values, user_attrs, system_attrs = [], [], [], []
        for i, t in enumerate(trials):
            trial_id = conn.execute(insert(models.TrialModel.__table__).values(
                study_id=study_id, number=base + i, state=t.state,
                datetime_start=utc(t.datetime_start), datetime_complete=utc(t.datetime_complete),
            )).inserted_primary_key[0]
            for name, v in t.params.items():
                dist = t.distributions[name]
                params.append({"trial_id": trial_id, "param_name": name, "param_value": dist.to_internal_repr(v),
                               "distribution_json": distribution_to_json(dist)})
            for objective, v in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(v)
                values.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
            user_attrs += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items()]
            system_attrs += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                             for k, v in t.system_attrs.items()]
        for model, rows in ((models.TrialParamModel, params), (models.TrialValueModel, values),
                            (models.TrialUserAttributeModel, user_attrs),
                            (models.TrialSystemAttributeModel, system_attrs)):
            if rows:
                conn.execute(insert(model.__table__), rows)
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


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
