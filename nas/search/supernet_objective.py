"""`--objective supernet --supernet SUPERNET.pt`: each candidate's held-out score as a subnet of a trained
supernet, its batch norms recalibrated first (`nas.supernet.SubnetEvaluator`): trained accuracy in a
fraction of a second instead of a training run.

`--supernet-metric top1` (default) maximises held-out top-1; `log_loss` maximises the negative held-out
log-loss, which still orders candidates where top-1 ties near a data set's ceiling. The objective's name
carries the metric, the data and a digest of the checkpoint, so a study is never resumed with scores of
other weights. The winner's weights can be cut from the supernet (`save_weights`: best_weights.pt).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from nas.search.objective_registry import Metrics, ObjectiveError, ObjectiveOptions
from nas.space import SearchSpace

METRICS = ("top1", "log_loss")


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    """The first `length` hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


class SupernetObjective:
    """A candidate's held-out top-1 (or negative log-loss) as a recalibrated subnet of a supernet."""

    def __init__(self, checkpoint: str | os.PathLike, metric: str = "top1", *, data: str | None = None,
                 device: str | None = None) -> None:
        from nas.supernet import read_checkpoint
        from nas.supernet.files import checkpoint_data

        if metric not in METRICS:
            raise ObjectiveError(f"--supernet-metric: {metric!r} is not one of {', '.join(METRICS)}")
        doc = read_checkpoint(checkpoint)  # a missing or foreign file is refused here, in one line
        self.checkpoint, self.metric, self.device = str(checkpoint), metric, device
        self.data = data if data is not None else checkpoint_data(doc)
        self.name = f"supernet({metric},{self.data},{file_digest(checkpoint)})"
        self.help = ("held-out top-1 of the recalibrated subnet, higher is better" if metric == "top1" else
                     "negative held-out log-loss of the recalibrated subnet, higher is better")
        self.evaluator: Any = None

    def check(self, space: SearchSpace) -> None:
        """Load the supernet for `space` before any trial: one made for another space is refused here."""
        if self.evaluator is None or self.evaluator.supernet.space.file != space.file:
            from nas.supernet import SubnetEvaluator, load_supernet

            supernet, _ = load_supernet(self.checkpoint, space)
            # Calibration images of seed 0 whatever the search's seed, as `nas supernet eval` picks them.
            self.evaluator = SubnetEvaluator(supernet, self.data, device=self.device)

    def score(self, space: SearchSpace, arch: Mapping[str, Any], metrics: Metrics) -> float:
        self.check(space)
        result = self.evaluator.score(arch)
        return result.top1 if self.metric == "top1" else -result.log_loss

    def save_weights(self, space: SearchSpace, arch: Mapping[str, Any], path: Path) -> Path:
        """Write the subnet's state_dict (cut from the supernet, batch norms recalibrated) atomically."""
        from nas.export import save_weights

        self.check(space)
        return save_weights(self.evaluator.recalibrated(arch), path)


def make_supernet(options: ObjectiveOptions) -> SupernetObjective:
    """The registry's factory: refuses to start without a checkpoint."""
    if not options.supernet:
        raise ObjectiveError("--objective supernet needs --supernet SUPERNET.pt (from `nas supernet train`)")
    return SupernetObjective(options.supernet, options.supernet_metric or "top1", data=options.data)
