"""Hardware-aware neural architecture search for mobile networks.

YAML search spaces (`nas.space`) of static operators (`nas.ops`), one builder (`nas.builder`), exact
cost accounting (`nas.cost`), latency from per-device tables (`nas.latency`), Optuna search
(`nas.search`), run folders (`nas.report`), standalone export (`nas.export`), and the command line
(`nas.cli`) over the Python API (`nas.api`). docs/architecture.md shows how they fit.
"""
from __future__ import annotations

__version__ = "0.1.0"
