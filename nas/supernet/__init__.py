"""A weight-sharing supernet from a YAML search space: elastic cuts of shared weights (`elastic`), the
supernet module (`model`)."""
from __future__ import annotations

from nas.supernet.checkpoint import load_supernet, read_checkpoint, save_checkpoint
from nas.supernet.model import Supernet, SupernetError

__all__ = ["Supernet", "SupernetError", "load_supernet", "read_checkpoint", "save_checkpoint"]
