"""The per-user cache folder: latency tables and per-unit cost counts live there.

A bottom-layer module (it imports nothing from nas) so `nas.cost` finds the
folder without importing latency.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_LUT_DIR", "default_table_dir"]

ENV_LUT_DIR = "NAS_LUT_DIR"


def default_table_dir() -> Path:
    """Per-user cache folder for tables: $NAS_LUT_DIR, else $XDG_CACHE_HOME/mobile-nas/latency."""
    if os.environ.get(ENV_LUT_DIR):
        return Path(os.environ[ENV_LUT_DIR])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mobile-nas" / "latency"
