"""A test-only objective that sleeps: imported by worker processes through $NAS_PLUGINS, never by the package."""
from __future__ import annotations

import os
import time

from nas.search.objective_registry import OBJECTIVES, Metrics, register_objective
from nas.search.objectives import Objective

SLEEP_S = float(os.environ.get("NAS_TEST_SLEEP_S", "1.0"))


def _score(space, arch, metrics: Metrics) -> float:
    time.sleep(SLEEP_S)  # long enough to be killed mid-trial
    return float(metrics.macs)


if "sleepy" not in OBJECTIVES:
    register_objective("sleepy", "test only: MACs after a sleep", lambda options: Objective("sleepy", "", _score))
