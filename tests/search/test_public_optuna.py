"""The project uses Optuna's public API only: no private modules (`optuna.storages._rdb`), no private
attributes of Optuna objects (`study._storage`, `trial._trial_id`), so an Optuna upgrade cannot break it
silently (issue 12)."""
from __future__ import annotations

import re

from roots import ROOT

# A private segment anywhere in a dotted optuna path: `optuna.storages._rdb`, `from optuna._imports import`.
PRIVATE_MODULE = re.compile(r"\boptuna(?:\.\w+)*\._[A-Za-z]\w*")  # dunders such as __version__ are public
# A private attribute of a variable that holds an Optuna object, by the names this project gives them.
PRIVATE_ATTRIBUTE = re.compile(r"\b(?:study|studies|trial|trials|frozen|storage|sampler|memory|optuna)\._[A-Za-z]\w*")


def _offences(text: str) -> list[str]:
    return [m.group(0) for pattern in (PRIVATE_MODULE, PRIVATE_ATTRIBUTE) for m in pattern.finditer(text)]


def test_the_patterns_catch_private_use() -> None:
    assert _offences("from optuna.storages._rdb import models") == ["optuna.storages._rdb"]
    assert _offences("x = study._get_trials(deepcopy=False)") == ["study._get_trials"]
    assert _offences("tid = trial._trial_id; s = self._seed") == ["trial._trial_id"]
    assert _offences("optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(p))") == []
    assert _offences("optuna.__version__") == []


def test_no_private_optuna_in_the_sources() -> None:
    found = {}
    for folder in ("nas", "proxies", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            hits = _offences(path.read_text(encoding="utf-8"))
            if hits:
                found[str(path.relative_to(ROOT))] = hits
    assert found == {}
