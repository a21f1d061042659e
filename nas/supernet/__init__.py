"""A weight-sharing supernet from a YAML search space: elastic cuts of shared weights (`elastic`), the
supernet module (`model`), checkpoints (`checkpoint`), scoring recalibrated subnets (`evaluate`) and
opening a checkpoint with a fixed architecture (`files`)."""
from __future__ import annotations

from nas.supernet.checkpoint import load_supernet, read_checkpoint, save_checkpoint
from nas.supernet.evaluate import SubnetEvaluator, SubnetScore
from nas.supernet.files import open_subnet, open_supernet
from nas.supernet.model import Supernet, SupernetError

__all__ = ["SubnetEvaluator", "SubnetScore", "Supernet", "SupernetError", "load_supernet", "open_subnet",
           "open_supernet", "read_checkpoint", "save_checkpoint"]
