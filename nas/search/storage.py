"""Optuna storage for searches: opened with a clear error, written in batches.

Sampling runs against an in-memory copy of the study, and finished trials are
copied to the persistent storage (SQLite by default) in batches. Optuna's own
`RDBStorage` writes a trial one parameter at a time, with two queries each:
a 111-decision sandglass trial costs about 0.2 s on a small CPU, more than the
rest of the search. `add_trials_bulk` writes a whole batch in one transaction
through Optuna's own table models, and falls back to `Study.add_trials` for
storages that are not relational.
"""
from __future__ import annotations

import json
from datetime import timezone
from typing import Sequence

import optuna
from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial

from nas.errors import NasError


class StorageError(NasError):
    """A storage URL that cannot be opened or used."""


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url` (any SQLAlchemy URL), or a one-line StorageError."""
    try:
        if url.startswith("sqlite:"):
            # Wait for a busy file rather than fail at once when two processes share it.
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
        return optuna.storages.get_storage(url)
    except Exception as exc:  # SQLAlchemy raises many kinds; the user needs one line
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {url!r}: {detail}") from None


def _rdb(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    backend = getattr(storage, "_backend", storage)  # RDB storages are wrapped in a cache layer
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def add_trials_bulk(study: optuna.Study, trials: Sequence[FrozenTrial]) -> None:
    """Append finished `trials` to `study` in one transaction (numbers follow the study's count)."""
    if not trials:
        return
    rdb = _rdb(study._storage)
    if rdb is None:
        study.add_trials(trials)
        return
    from optuna.storages._rdb import models
    from sqlalchemy import func, insert

    def utc(when):  # the RDB schema stores naive UTC
        return None if when is None else when.astimezone(timezone.utc).replace(tzinfo=None)

    session = rdb.scoped_session()
    try:
        models.StudyModel.find_or_raise_by_id(study._study_id, session, for_update=True)
        base = session.query(func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == study._study_id).scalar()
        conn = session.connection()
        params, values, user_attrs, system_attrs = [], [], [], []
        for i, t in enumerate(trials):
            trial_id = conn.execute(insert(models.TrialModel.__table__).values(
                study_id=study._study_id, number=base + i, state=t.state,
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
