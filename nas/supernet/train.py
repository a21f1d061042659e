"""Training a supernet once, so that any subnet's accuracy can be read from it afterwards.

One stage in the BigNAS / AttentiveNAS style: every step runs the sandwich rule (`sandwich`): the
largest subnet on the labels, the smallest and `n_random` random subnets distilled from it, one
optimiser step. The recipe is `nas.train`'s where it can be:

- SGD, Nesterov momentum 0.9, weight decay 5e-4 on conv and linear weights only: not on batch-norm
  scales and shifts or biases, which BigNAS found hurts the small subnets (Yu et al. 2020, sec. 3.1);
- a cosine learning rate per step from `lr` to 0 over all steps, computed from the step number;
- no augmentation; batches reshuffled each epoch; a final batch of a single image dropped;
- on the CPU, weights and images in channels_last (measured: 1.8x faster a step on sandglass32, 1 thread).

Each subnet gets the batch at its own resolution: the data is prepared at every resolution of the
space, and the split is fixed, so one index picks the same images at each.

Resumable: `out` receives a checkpoint (`save_checkpoint`, atomic) at every epoch's end, every
`checkpoint_every` seconds and on Ctrl-C; running again with the same `out` and settings resumes at the
step it holds. Settings that differ are refused in one line, the epoch count included: the cosine
schedule spans all steps, so another count would make another run rather than continue this one.

Deterministic: the weights start from `seed`; each step's subnets, dropout and each epoch's batch order
come from seeds derived from (seed, step or epoch), and the caller's RNG state is left as it was.
On the CPU, with one thread count, a run stopped and resumed ends with the weights of a run that was
never stopped, bit for bit.

How long (sandglass32 on digits, 23 steps an epoch, measured on a shared 2-core machine at load 3, one
thread): 0.41 s a step, 60 epochs in 9.4 minutes. The largest subnet fits within a few epochs, but the
random subnets' distillation loss stays near 1.4 for the first dozen epochs and then falls to about 0.11
by epoch 45; after BN recalibration, 12 random subnets scored a median 0.26 top-1 at epoch 10 of the
60-epoch run, 0.84 at 20, 0.93 at 30, 0.95 at 60 (a run of 10 epochs: 0.18). So 60 epochs for that task.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

import torch

from nas.cost import CostModel
from nas.data import Dataset
from nas.errors import DataError, TrainingError
from nas.space import Arch, SearchSpace
from nas.supernet.checkpoint import save_checkpoint
from nas.supernet.extremes import extreme_archs
from nas.supernet.model import Supernet
from nas.supernet.resume import RunState, TrainingInterrupted, held_interrupt, resumable, run_settings
from nas.supernet.sandwich import derive_seed, sandwich_step, step_archs
from nas.train import DEFAULT_LR, MOMENTUM, WEIGHT_DECAY, _check_settings, _dataset, _memory_format, _to, \
    pick_device

CHECKPOINT_SECONDS = 60.0
Progress = Callable[[range], Iterable[int]]  # wraps the steps still to run; set_postfix is used if present


@dataclass(frozen=True, kw_only=True)
class SupernetTrainResult:
    """Where a training run ended. `loss` is the largest subnet's mean cross-entropy per epoch, `distill`
    the others' mean distillation loss; both cover the whole run, resumed parts included."""

    epochs: int
    steps: int  # optimiser steps of the whole run
    seconds: float  # training time of this call
    run_seconds: float  # training time of the whole run, every resumed part included
    loss: tuple[float, ...]
    distill: tuple[float, ...]
    out: str
    resumed_from_step: int  # 0 for a fresh run
    largest: Arch
    smallest: Arch
    n_train: int
    device: str
    supernet: Supernet | None = field(default=None, repr=False, compare=False)  # in eval mode

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps": self.steps, "seconds": self.seconds,
                "run_seconds": self.run_seconds, "loss": list(self.loss), "distill": list(self.distill),
                "out": self.out, "resumed_from_step": self.resumed_from_step, "largest": dict(self.largest),
                "smallest": dict(self.smallest), "n_train": self.n_train, "device": self.device}


def training_data(space: SearchSpace, data: str | os.PathLike | Mapping[int, Dataset]) -> dict[int, Dataset]:
    """The data set at every resolution of the space: "digits", an image folder, or {resolution: Dataset}
    (e.g. shrunk training splits). Every resolution must hold the same training images in the same order."""
    if isinstance(data, Mapping):
        missing = [r for r in space.resolution if r not in data]
        if missing:
            raise DataError(f"the data has no set at resolution {missing[0]}; {space.file} takes "
                            f"{list(space.resolution)}")
        sets = {r: _dataset(data[r], r, space.in_channels) for r in space.resolution}
    else:
        sets = {r: _dataset(data, r, space.in_channels) for r in space.resolution}
    first = sets[space.resolution[0]]
    for r, ds in sets.items():
        if ds.classes != first.classes or not torch.equal(ds.y_train, first.y_train):
            raise DataError(f"{ds.source}: the training split at {r}x{r} is not the one at {first.resolution}x"
                            f"{first.resolution}; every resolution must hold the same images in the same order")
    return sets


def cosine_lr(lr: float, step: int, total: int) -> float:
    """The learning rate of `step` (0-based) of `total`: `lr` at the first, falling to 0 along a cosine."""
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / total))


def _optimizer(supernet: Supernet, lr: float) -> torch.optim.SGD:
    decay = [p for p in supernet.parameters() if p.dim() > 1]
    plain = [p for p in supernet.parameters() if p.dim() <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": plain, "weight_decay": 0.0}],
                           lr=lr, momentum=MOMENTUM, nesterov=True)


def _check_n_random(n_random: int) -> None:
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise TrainingError(f"random subnets per step must be an integer of at least 0, got {n_random!r}")


def train_supernet(space: SearchSpace, data: str | os.PathLike | Mapping[int, Dataset] = "digits",
                   out: str | os.PathLike = "supernet.pt", *, epochs: int, batch_size: int = 64,
                   lr: float = DEFAULT_LR, seed: int = 0, n_random: int = 2, device: str | torch.device | None = None,
                   progress: Progress | None = None, checkpoint_every: float = CHECKPOINT_SECONDS,
                   cost: CostModel | None = None) -> SupernetTrainResult:
    """Train the supernet of `space` on `data` into the checkpoint `out`, resuming from `out` when it holds
    this run stopped early (see the module docstring). `cost` counts MACs for the sandwich's ends (default:
    the per-user cache). Raises `DataError`, `TrainingError` or `SupernetError` in one line, and
    `TrainingInterrupted` (a KeyboardInterrupt) after saving when Ctrl-C stops the run."""
    _check_settings(epochs, batch_size, lr, 0.0)
    _check_n_random(n_random)
    dev = pick_device(device)
    sets = training_data(space, data)
    first = sets[space.resolution[0]]
    if space.num_classes != first.num_classes:
        space = replace(space, num_classes=first.num_classes)
    settings = run_settings(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, n_random=n_random, data=first)
    doc = resumable(out, space, settings)
    largest, smallest = extreme_archs(space, cost)
    fork = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(seed)
        supernet = Supernet(space).to(dev, memory_format=_memory_format(dev))
        opt = _optimizer(supernet, lr)
        state = RunState()
        if doc is not None:
            supernet.load_state_dict(doc["model"], strict=True)
            opt.load_state_dict(doc["train"]["optimizer"])
            state = RunState.of(doc["train"])
        run = _Run(supernet=supernet, opt=opt, sets=sets, dev=dev, settings=settings, largest=largest,
                   smallest=smallest, out=str(out))
        start_step, start = state.step, time.perf_counter()
        run.loop(state, progress, checkpoint_every)
    return SupernetTrainResult(epochs=epochs, steps=state.step, seconds=time.perf_counter() - start,
                               run_seconds=state.seconds, loss=tuple(state.loss), distill=tuple(state.distill),
                               out=str(out), resumed_from_step=start_step, largest=largest, smallest=smallest,
                               n_train=len(first.y_train), device=str(dev), supernet=supernet.eval())


@dataclass
class _Run:
    """One training run's fixed parts; `loop` moves a `RunState` forward."""

    supernet: Supernet
    opt: torch.optim.SGD
    sets: dict[int, Dataset]
    dev: torch.device
    settings: dict[str, Any]
    largest: Arch
    smallest: Arch
    out: str

    def save(self, state: RunState, total: int, per_epoch: int) -> None:
        train = {**state.to_dict(), "total_steps": total, "steps_per_epoch": per_epoch, "settings": self.settings,
                 "optimizer": self.opt.state_dict(), "largest": dict(self.largest), "smallest": dict(self.smallest)}
        save_checkpoint(self.out, self.supernet, train)

    def loop(self, state: RunState, progress: Progress | None, checkpoint_every: float) -> None:
        s = self.settings
        bs, seed = s["batch_size"], s["seed"]
        x = {r: _to(ds.x_train, self.dev) for r, ds in self.sets.items()}
        y = next(iter(self.sets.values())).y_train.to(self.dev)
        n = len(y)
        per_epoch = n // bs + (n % bs > 1)  # a last batch of one image is dropped, as in nas.train
        total = s["epochs"] * per_epoch
        steps = progress(range(state.step, total)) if progress else range(state.step, total)
        order_of: tuple[int, torch.Tensor] | None = None
        saved_at = time.monotonic()
        self.supernet.train()
        with held_interrupt() as interrupt:
            for step in steps:
                epoch, i = divmod(step, per_epoch)
                if order_of is None or order_of[0] != epoch:
                    gen = torch.Generator().manual_seed(derive_seed(seed, "order", epoch))
                    order_of = (epoch, torch.randperm(n, generator=gen).to(self.dev))
                idx = order_of[1][i * bs:(i + 1) * bs]
                archs = step_archs(self.supernet.space, self.largest, self.smallest, seed, step, s["n_random"])
                images = {r: x[r][idx] for r in {self.supernet.plan(a).resolution for a in archs}}
                started = time.perf_counter()
                for group in self.opt.param_groups:
                    group["lr"] = cosine_lr(s["lr"], step, total)
                torch.manual_seed(derive_seed(seed, "dropout", step))
                self.opt.zero_grad(set_to_none=True)
                ce, kd = sandwich_step(self.supernet, images, y[idx], archs, f"epoch {epoch + 1}, step {i + 1}")
                self.opt.step()
                state.advance(ce, kd, len(idx), time.perf_counter() - started, epoch_done=i + 1 == per_epoch)
                if i + 1 == per_epoch or interrupt.requested or time.monotonic() - saved_at >= checkpoint_every:
                    self.save(state, total, per_epoch)
                    saved_at = time.monotonic()
                if interrupt.requested:
                    raise TrainingInterrupted(self.out, state.step, total)
                if hasattr(steps, "set_postfix"):
                    steps.set_postfix(epoch=f"{epoch + 1}/{s['epochs']}", loss=f"{state.running_loss():.4f}",
                                      refresh=False)
