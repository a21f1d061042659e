"""Stopping and resuming a supernet training: the state a checkpoint carries, the settings a resumed run
must share with it, and Ctrl-C held until the running step ends.

The `train` entry of a checkpoint (plain values and tensors; `torch.load(weights_only=True)` reads it):
    step (optimiser steps done), total_steps, steps_per_epoch, settings, optimizer (its state dict),
    loss and distill (per finished epoch), sums (of the epoch under way: cross-entropy, distillation,
    images), seconds (training time so far), largest and smallest (the sandwich's ends, decision -> value).
"""
from __future__ import annotations

import hashlib
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from nas.data import Dataset
from nas.errors import TrainingError
from nas.space import SearchSpace
from nas.supernet.checkpoint import check_space, read_checkpoint

# Changes whenever the training recipe changes, so that a checkpoint is only resumed by the same recipe.
RECIPE = "sandwich/1"

_SETTING_NAMES = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "seed": "--seed",
                  "n_random": "random subnets per step", "data": "--data", "n_train": "training images",
                  "data_digest": "training images' digest", "recipe": "training recipe"}


def run_settings(*, epochs: int, batch_size: int, lr: float, seed: int, n_random: int, data: Dataset) -> dict:
    """What a resumed run must share with the checkpoint. The data is pinned by a digest of its training
    split, so an edited folder or another subset (the benchmark's shrunk splits) is not mistaken for it."""
    digest = hashlib.sha256(data.y_train.numpy().tobytes())
    digest.update(data.x_train.numpy().tobytes())
    return {"epochs": epochs, "batch_size": batch_size, "lr": float(lr), "seed": seed, "n_random": n_random,
            "data": data.source, "n_train": len(data.y_train), "data_digest": digest.hexdigest()[:16],
            "recipe": RECIPE}


def resumable(out: str | os.PathLike, space: SearchSpace, settings: dict) -> dict[str, Any] | None:
    """The checkpoint at `out` to resume from (None when there is none), or a one-line refusal: not a
    supernet checkpoint, another space, no training state, or other settings."""
    if not Path(out).exists():
        return None
    doc = read_checkpoint(out)
    if int(doc["num_classes"]) != space.num_classes:
        raise TrainingError(f"{out}: holds a supernet of {doc['num_classes']} classes, the data has "
                            f"{space.num_classes}; choose another --out")
    check_space(doc, space, out)
    state = doc.get("train")
    if not isinstance(state, dict) or "step" not in state:
        raise TrainingError(f"{out}: holds a supernet without training state, so there is nothing to resume; "
                            f"choose another --out")
    have = state.get("settings", {})
    for key, want in settings.items():
        if have.get(key) != want:
            raise TrainingError(f"{out}: its training was started with {_SETTING_NAMES[key]} {have.get(key)!r}, "
                                f"this run has {want!r}; rerun with the checkpoint's settings to resume it, "
                                f"or choose another --out")
    return doc


@dataclass
class RunState:
    """Where a run stands; everything in it goes into the checkpoint."""

    step: int = 0
    loss: list[float] = field(default_factory=list)
    distill: list[float] = field(default_factory=list)
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0])  # epoch under way: ce, kd, images
    seconds: float = 0.0

    @classmethod
    def of(cls, train: dict[str, Any]) -> RunState:
        return cls(step=int(train["step"]), loss=list(train["loss"]), distill=list(train["distill"]),
                   sums=list(train["sums"]), seconds=float(train["seconds"]))

    def advance(self, ce: float, kd: float, images: int, seconds: float, epoch_done: bool) -> None:
        """Count one finished step; at an epoch's end its means join the per-epoch lists."""
        self.step += 1
        self.seconds += seconds
        self.sums = [self.sums[0] + ce * images, self.sums[1] + kd * images, self.sums[2] + images]
        if epoch_done:
            self.loss.append(self.sums[0] / self.sums[2])
            self.distill.append(self.sums[1] / self.sums[2])
            self.sums = [0.0, 0.0, 0]

    def running_loss(self) -> float:
        return self.sums[0] / self.sums[2] if self.sums[2] else (self.loss[-1] if self.loss else float("nan"))

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "loss": list(self.loss), "distill": list(self.distill), "sums": list(self.sums),
                "seconds": self.seconds}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run after a step, and the checkpoint at `out` holds that step."""

    def __init__(self, out: str, step: int, total: int) -> None:
        self.out, self.step, self.total = out, step, total
        super().__init__(f"stopped after step {step} of {total}; {out} holds it: run the same command again "
                         f"to resume")


@dataclass
class InterruptRequest:
    requested: bool = False


@contextmanager
def held_interrupt() -> Iterator[InterruptRequest]:
    """Ctrl-C sets `requested` instead of raising, so the loop can finish its step and save a checkpoint
    at a step boundary (a step half done would have moved batch-norm statistics already). A second
    Ctrl-C raises at once. Only in the main thread with Python's default handler; elsewhere a no-op."""
    request = InterruptRequest()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield request
        return

    def hold(signum: int, frame: Any) -> None:
        request.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, hold)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
