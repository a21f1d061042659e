"""The base exception of proxies, in a leaf module: `proxies.onnx_export` raises it without importing
`proxies.latency` (whose backends import the exporter), and `proxies.latency.errors` re-exports it."""

from __future__ import annotations

__all__ = ["LatencyError"]


class LatencyError(Exception):
    """Base of every error this package raises on purpose (bad profile, failed export, bad table)."""
