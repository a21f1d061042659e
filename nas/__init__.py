"""Hardware-aware neural architecture search for mobile networks.

YAML search spaces (`nas.space`), static operators (`nas.ops`), one builder
(`nas.builder`) and exact cost accounting (`nas.cost`, `proxies.flops`).
"""
from __future__ import annotations

__version__ = "0.1.0"
