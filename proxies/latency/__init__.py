"""On-device latency of any nn.Module: device profiles, a robust timing harness, and lookup tables.

A leaf package: it imports only the standard library, torch and numpy, and
onnx / onnxruntime / onnxscript lazily for the ``onnxruntime`` backend.  It
knows nothing of search spaces; table keys are opaque strings.

Typical use::

    profile = current_profile("torch", threads=1)
    table = LatencyTable.create(profile, "lut.json")
    with table.open_journal():
        m = measure_module(block, (16, 56, 56), profile)
        table.add(key, Entry(ms=m.median_ms, spread_ms=m.spread_ms, runs=m.runs, rounds=m.rounds))
"""

from __future__ import annotations

from proxies.latency.backends import (Runner, export_onnx, measure_module, measure_modules, pinned_cpus,
                                      pinned_threads, prepare)
from proxies.latency.errors import LatencyError, ProfileMismatchError, TableError
from proxies.latency.harness import Measurement, Summary, measure, measure_interleaved, summarize
from proxies.latency.profile import BACKENDS, DeviceProfile, current_profile
from proxies.latency.records import Correction, Entry
from proxies.latency.table import LatencyTable

__all__ = [
    "BACKENDS", "Correction", "DeviceProfile", "Entry", "LatencyError", "LatencyTable", "Measurement",
    "ProfileMismatchError", "Runner", "Summary", "TableError", "current_profile", "export_onnx", "measure",
    "measure_interleaved", "measure_module", "measure_modules", "pinned_cpus", "pinned_threads", "prepare",
    "summarize",
]
