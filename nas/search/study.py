"""Opening a search's study: storage, name, directions, and the check that it belongs to this search.

A study records what it was made for (space fingerprint, objective, target,
mode, latency profile) in its user attributes; resuming it with anything
different is refused, since its constraint values and objectives would no
longer mean the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from nas.errors import NasError
from nas.search.storage import StorageError
from nas.space import SearchSpace, space_fingerprint


class StudyMismatchError(NasError):
    """An existing study was made for another space, objective, target or device."""


@dataclass(frozen=True)
class StudySpec:
    """What a study is for; stored in its user attributes as `nas.<field>`."""

    space: str
    space_fingerprint: str
    objective: str
    target_ms: float
    mode: str  # "multi": (objective, latency) front; "single": objective only
    latency_profile: str

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"] if self.mode == "multi" else ["maximize"]

    def attrs(self) -> dict[str, Any]:
        return {f"nas.{k}": v for k, v in self.__dict__.items()}


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage, storage_url: str,
               study_name: str, *, create: bool = True) -> optuna.Study:
    """Create the study in `storage` (opened from `storage_url`), or load it when it exists and was made for
    the same search; with `create=False` a missing study is a StudyMismatchError."""
    try:
        existing = {s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)}
    except Exception as exc:
        raise StorageError(f"cannot read studies from {storage_url!r}: {str(exc).splitlines()[0]}") from None
    if study_name in existing:
        study = optuna.load_study(study_name=study_name, storage=storage)
        _check(study, spec, storage_url, study_name)
        return study
    if not create:
        raise StudyMismatchError(f"study {study_name!r} is not in {storage_url}; start the run with `nas search`")
    study = optuna.create_study(study_name=study_name, storage=storage, directions=spec.directions)
    for key, value in spec.attrs().items():
        study.set_user_attr(key, value)
    return study


def _check(study: optuna.Study, spec: StudySpec, url: str, name: str) -> None:
    have = study.user_attrs
    where = f"study {name!r} in {url}"
    if "nas.space_fingerprint" not in have:
        raise StudyMismatchError(f"{where} was not made by `nas search`; use another --study-name or --run-dir")
    labels = {"space_fingerprint": "space", "space": "space", "objective": "objective",
              "target_ms": "target latency (ms)", "mode": "mode", "latency_profile": "latency profile"}
    for field, label in labels.items():
        want, got = getattr(spec, field), have.get(f"nas.{field}")
        if want != got:
            if field == "space_fingerprint":
                got, want = f"{have.get('nas.space')} ({got})", f"{spec.space} ({want})"
            raise StudyMismatchError(f"{where} was made for {label} {got}, not {want}; "
                                     f"use another --study-name or --run-dir to start a new search")
