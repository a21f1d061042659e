"""Typed errors. Each one prints as a single line that names where it went wrong."""
from __future__ import annotations


class NasError(Exception):
    """Base class of every error this toolkit raises on purpose (exit code 2 on the CLI)."""


class SpaceError(NasError, ValueError):
    """A search space or architecture file is malformed: names the file, the key path and what is allowed."""

    def __init__(self, file: str, path: str, detail: str) -> None:
        self.file, self.path, self.detail = file, path, detail
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + detail)


class ArchError(NasError, ValueError):
    """An architecture (decision values) does not fit its space."""


class DataError(NasError, ValueError):
    """A data set for training cannot be used: names the path and what is allowed."""


class TrainingError(NasError):
    """Training settings are out of range, or training diverged (a non-finite loss)."""


class DataWarning(UserWarning):
    """Something in a data set was skipped (unreadable image files), with a count."""
