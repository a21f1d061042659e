"""What `nas search` takes besides the space and the latency table, and the checks on it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from nas.errors import NasError
from nas.search.target import TargetError

FIT_NETWORKS = 12  # networks a search measures end to end to fit a correction when its table has none
MODES = ("multi", "single")
HEARTBEAT_S = 5.0
GRACE_S = 30.0


@dataclass
class SearchSettings:
    """Everything `nas search` takes besides the space and the latency table."""

    target_ms: float
    objective: str = "macs"
    sampler: str = "auto"
    mode: str = "multi"
    seed: int | None = 0
    n_trials: int | None = 100
    timeout_s: float | None = None
    run_dir: str | Path | None = None
    storage: str | None = None
    study_name: str | None = None
    flush_every_s: float = 2.0
    data: str | None = None  # --objective trained: digits or an image folder (supernet: its held-out images)
    epochs: int | None = None
    supernet: str | None = None  # --objective supernet: the checkpoint
    supernet_metric: str = "top1"  # --objective supernet: top1 or log_loss
    # Feasible means predicted * (1 + margin) <= target, so that a maximiser is not drawn to the networks
    # the table under-predicts. None: the table's own figure (LatencyModel.default_margin).
    latency_margin: float | None = None
    fit: int = FIT_NETWORKS  # networks to fit a correction on first when the table has none (0: none)
    # Shared mode (`--workers N`, a server storage, `nas worker`): N local worker processes, and the
    # heartbeat of a running trial every heartbeat_s; a trial whose heartbeat stands still for grace_s
    # is failed and retried once (nas.search.shared).
    workers: int | None = None
    heartbeat_s: float = HEARTBEAT_S
    grace_s: float = GRACE_S

    def check(self) -> None:
        """Refuse a setting the search cannot use, with the option's name (objective and sampler names are
        checked by their registries)."""
        if not (isinstance(self.target_ms, (int, float)) and math.isfinite(self.target_ms) and self.target_ms > 0):
            raise TargetError(f"--target-latency: {self.target_ms!r} is not a positive latency")
        if self.mode not in MODES:
            raise NasError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.n_trials is not None and self.n_trials < 1:
            raise NasError(f"--n-trials: {self.n_trials} is not a positive number of trials")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise NasError(f"--timeout: {self.timeout_s} is not a positive number of seconds")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise NasError(f"--workers: {self.workers!r} is not a positive number of worker processes")
        if self.workers is not None and self.n_trials is None:
            raise NasError("--n-trials: --workers needs a number of trials, the budget the workers share")
        if not (0 < self.heartbeat_s < self.grace_s):
            raise NasError(f"--heartbeat {self.heartbeat_s!r} / --grace {self.grace_s!r}: the heartbeat must be a "
                           f"positive number of seconds shorter than the grace period")
        margin = self.latency_margin
        if margin is not None and not (isinstance(margin, (int, float)) and math.isfinite(margin) and 0 <= margin < 1):
            raise NasError(f"--latency-margin: {margin!r} is not a fraction in [0, 1), e.g. 0.05 for 5%")
        if self.fit != 0 and (isinstance(self.fit, bool) or not isinstance(self.fit, int) or self.fit < 4):
            raise NasError(f"--fit: {self.fit!r} is not 0 or a number of networks >= 4")
