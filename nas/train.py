"""Trained evaluation: train one fixed architecture from scratch and score top-1 on a held-out split.

The recipe is deliberately plain, so that candidates are compared on equal
terms rather than tuned one by one:

- SGD, momentum 0.9 (Nesterov), weight decay 5e-4 on every parameter;
- a cosine learning-rate schedule per step, from `lr` down to 0 over all epochs;
- cross-entropy, optional label smoothing (0 by default);
- no augmentation; batches reshuffled each epoch; a final batch of a single
  image is dropped (BatchNorm cannot train on one value per channel);
- after training, BatchNorm statistics are recomputed on the training set (a
  plain average over batches of 512, no gradients). A run of a few epochs
  otherwise leaves running averages dominated by its first, wildly scaled
  steps: on digits, most one-epoch candidates scored chance (0.097) without
  this and 0.90 to 0.95 with it.

Seeds: `seed` sets the weight initialisation, dropout and the batch order.
The global torch RNG is forked, so the caller's random state is left as it
was. On the CPU two runs with the same seed and the same number of threads
give identical losses and top-1 (a different thread count changes reduction
order, and so the last bits and then the trajectory); CUDA kernels may
differ between runs. On the CPU the model and data use channels_last, which
oneDNN's depthwise convolutions train about 1.5x faster in.

The classifier is sized for the data: when the space's `num_classes` differs
from the data's class count, the space is copied with the data's count
(`dataclasses.replace`) before building, so a 1000-class space can be trained
on 10 digits. The data set is prepared once per process (`nas.data.prepared`).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from nas.builder import build
from nas.data import Dataset, prepared
from nas.errors import DataError, TrainingError
from nas.space import SearchSpace, plan

DEFAULT_LR = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
EVAL_BATCH = 512

Progress = Callable[[Iterable[int]], Iterable[int]]  # e.g. lambda it: tqdm(it); set_postfix is used if present


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What one training run gives: held-out top-1, the mean training loss of each epoch, and sizes."""

    top1: float  # fraction of test images classified correctly, 0..1
    train_loss: tuple[float, ...]  # mean training loss per epoch
    epochs: int
    seconds: float  # build + train + evaluate (data preparation, cached per process, not included)
    n_train: int
    n_test: int
    device: str
    resolution: int
    skipped: int = 0  # unreadable image files the data set left out
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # the trained network, in eval mode

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "train_loss": list(self.train_loss), "epochs": self.epochs,
                "seconds": self.seconds, "n_train": self.n_train, "n_test": self.n_test, "device": self.device,
                "resolution": self.resolution, "skipped": self.skipped}


def pick_device(device: str | torch.device | None) -> torch.device:
    """None: CUDA when available, else the CPU. A named device must exist."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrainingError(f"device {device!r} is not a torch device; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {device!r}: CUDA is not available here; use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise TrainingError(f"device {device!r}: only cpu and cuda are supported")
    return dev


def _check_settings(epochs: int, batch_size: int, lr: float, label_smoothing: float) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise TrainingError(f"epochs must be an integer of at least 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise TrainingError(f"batch size must be an integer of at least 2, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise TrainingError(f"learning rate must be a positive number, got {lr!r}")
    if not 0 <= label_smoothing < 1:
        raise TrainingError(f"label smoothing must be in [0, 1), got {label_smoothing!r}")


def _dataset(data: str | os.PathLike | Dataset, resolution: int, channels: int) -> Dataset:
    if not isinstance(data, Dataset):
        return prepared(data, resolution, channels)
    if (data.resolution, data.channels) != (resolution, channels):
        raise DataError(f"{data.source}: prepared at {data.channels}x{data.resolution}x{data.resolution}, "
                        f"the network takes {channels}x{resolution}x{resolution}")
    return data


def _memory_format(dev: torch.device) -> torch.memory_format:
    """channels_last on the CPU (see the module docstring); the default layout on CUDA."""
    return torch.channels_last if dev.type == "cpu" else torch.contiguous_format


def _to(x: torch.Tensor, dev: torch.device) -> torch.Tensor:
    return x.to(dev).contiguous(memory_format=_memory_format(dev))


def recalibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Replace every BatchNorm's running mean and variance by their average over `x` (train-mode passes)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches that follow
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), EVAL_BATCH):
            if len(x) - i > 1:
                model(x[i:i + EVAL_BATCH])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of `model` (put in eval mode) on tensors already on its device."""
    return evaluate_loss(model, x, y)[0]


def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Top-1 accuracy and mean log-loss (cross-entropy in nats) of `model` (put in eval mode) on tensors
    already on its device. The log-loss still ranks networks where top-1 ties near the ceiling."""
    model.eval()
    correct, loss = 0, 0.0
    with torch.inference_mode():
        for i in range(0, len(x), EVAL_BATCH):
            logits, labels = model(x[i:i + EVAL_BATCH]), y[i:i + EVAL_BATCH]
            correct += int((logits.argmax(1) == labels).sum())
            loss += float(nn.functional.cross_entropy(logits.float(), labels, reduction="sum"))
    return correct / len(x), loss / len(x)


def train(space: SearchSpace, arch: Mapping[str, Any] | None, data: str | os.PathLike | Dataset = "digits",
          epochs: int = 3, *, batch_size: int = 64, lr: float = DEFAULT_LR, label_smoothing: float = 0.0,
          seed: int = 0, device: str | torch.device | None = None,
          progress: Progress | None = None, start_from: Callable[[nn.Module], None] | None = None) -> TrainResult:
    """Train the network `arch` selects in `space` (None for a fixed architecture) from scratch on `data`
    ("digits", an image-folder path, or a prepared `nas.data.Dataset`), then score top-1 on the test split.
    `start_from` is called on the built network before training: loading weights there fine-tunes them.

    Raises `DataError` for unusable data and `TrainingError` for bad settings or a non-finite loss.
    """
    _check_settings(epochs, batch_size, lr, label_smoothing)
    dev = pick_device(device)
    resolution = plan(space, arch or {}).resolution
    ds = _dataset(data, resolution, space.in_channels)
    if space.num_classes != ds.num_classes:
        space = replace(space, num_classes=ds.num_classes)
    start = time.perf_counter()
    fork = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(seed)
        model = build(space, arch).to(dev, memory_format=_memory_format(dev))
        if start_from is not None:
            start_from(model)
        losses = _fit(model, ds, dev, epochs=epochs, batch_size=batch_size, lr=lr,
                      label_smoothing=label_smoothing, seed=seed, progress=progress)
        recalibrate_bn(model, _to(ds.x_train, dev))
    top1 = evaluate(model, _to(ds.x_test, dev), ds.y_test.to(dev))
    return TrainResult(top1=top1, train_loss=tuple(losses), epochs=epochs, seconds=time.perf_counter() - start,
                       n_train=len(ds.y_train), n_test=len(ds.y_test), device=str(dev), resolution=resolution,
                       skipped=ds.skipped, model=model)


def _fit(model: nn.Module, ds: Dataset, dev: torch.device, *, epochs: int, batch_size: int, lr: float,
         label_smoothing: float, seed: int, progress: Progress | None) -> list[float]:
    """The training loop; returns the mean loss of each epoch."""
    x, y = _to(ds.x_train, dev), ds.y_train.to(dev)
    n = len(y)
    steps = n // batch_size + (n % batch_size > 1)  # a last batch of one image is dropped
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    epoch_iter = progress(range(epochs)) if progress else range(epochs)
    for epoch in epoch_iter:
        model.train()
        order = torch.randperm(n, generator=gen).to(dev)
        total = torch.zeros((), device=dev)
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            if not torch.isfinite(loss.detach()):
                raise TrainingError(f"training diverged: the loss is {loss.detach().item()} at epoch {epoch + 1}, step "
                                    f"{step + 1} (learning rate {lr:g}); try a lower learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * len(idx)
        losses.append(float(total) / (n if n % batch_size != 1 else n - 1))
        if hasattr(epoch_iter, "set_postfix"):
            epoch_iter.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def trained_accuracy(space: SearchSpace, arch: Mapping[str, Any] | None, data: str | os.PathLike = "digits",
                     epochs: int = 3, seed: int = 0) -> float:
    """Held-out top-1 after `epochs` of training from scratch: an accuracy objective for a search.
    The prepared data set is cached per (data, resolution, channels) across calls."""
    return train(space, arch, data, epochs, seed=seed).top1
