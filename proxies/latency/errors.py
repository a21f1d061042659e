"""Exceptions of proxies.latency: each message is one line that names the cause."""

from __future__ import annotations

from proxies.errors import LatencyError  # the base lives in a leaf so the ONNX exporter can raise it

__all__ = ["LatencyError", "ProfileMismatchError", "TableError"]


class ProfileMismatchError(LatencyError):
    """A table (or a measurement request) belongs to another device profile than the one in use.

    ``differences`` holds the human phrases, e.g. ``"threads (table 4, now 2)"``.
    """

    def __init__(self, message: str, differences: list[str] | None = None) -> None:
        super().__init__(message)
        self.differences = list(differences or [])


class TableError(LatencyError):
    """A latency table or its journal is damaged, truncated, edited or of an unknown version."""
