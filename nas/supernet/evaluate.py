"""Scoring subnets of a trained supernet: BN recalibration, then top-1 and log-loss on the held-out split.

A subnet's batch norms hold running statistics that every subnet has been updating in turn while the
supernet trained, so before a subnet is scored they are recomputed for it alone (BigNAS, OFA): one
train-mode pass, without gradients, over a fixed sample of training images (the same images for every
subnet, at its resolution; `nas.train.recalibrate_bn`). The statistics go into fresh tensors, never into
the supernet: its weights and shared statistics are read, not written.

The subnet runs as the supernet runs it, its static network on the meta device called with the cut
weights (no copy) and the fresh statistics. That measured faster than copying the subnet out
(`Supernet.subnet`): on sandglass32 and digits at 1 thread, median 0.05 s against 0.06 s a subnet
(0.09 against 0.17 s in a first pass over new subnets), with identical scores. Inputs are channels_last
on the CPU, as `nas.train` trains: 2 to 4 times faster here than the default layout. Train-mode batch
norm is most of the recalibration pass; `benchmarks/subnet_eval_speed.py` times the whole score.
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Union

import torch
from torch import nn
from torch.func import functional_call

from nas.builder import Network
from nas.data import Dataset
from nas.errors import DataError
from nas.space import Arch, canonical
from nas.supernet.model import Supernet
from nas.train import _dataset, _to, evaluate_loss, pick_device, recalibrate_bn

CALIBRATION_IMAGES = 512  # one batch of nas.train's EVAL_BATCH: the statistics of exactly these images
BUFFER_CACHE = 256  # subnets whose recalibrated statistics are kept (a few KB each)

#: "digits", an image-folder path, or prepared data sets by resolution.
Data = Union[str, os.PathLike, Mapping[int, Dataset]]


@dataclass(frozen=True)
class SubnetScore:
    """A subnet's held-out top-1 (0..1) and mean log-loss (nats), and the seconds recalibrating and
    evaluating it took (the first time: a cached score keeps its time)."""

    top1: float
    log_loss: float
    seconds: float


class _Bound(nn.Module):
    """A subnet as a module: the supernet's meta-device network called with the given tensors."""

    def __init__(self, skeleton: Network, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.net, self.tensors = skeleton, tensors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.tensors, (x,), strict=True)


def _fresh_statistics(skeleton: Network, device: torch.device) -> dict[str, torch.Tensor]:
    """Reset running statistics (mean 0, variance 1, no batches) for every batch norm of `skeleton`."""
    out: dict[str, torch.Tensor] = {}
    for name, m in skeleton.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            out[f"{name}.running_mean"] = torch.zeros(m.num_features, device=device)
            out[f"{name}.running_var"] = torch.ones(m.num_features, device=device)
            out[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long, device=device)
    return out


def calibration_indices(n_train: int, images: int, seed: int) -> torch.Tensor:
    """Which training images recalibrate every subnet: `images` of `n_train` drawn once for `seed`,
    sorted. The split is fixed and in one order at every resolution, so each resolution gets the same
    images."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_train, generator=gen)[:images].sort().values


class SubnetEvaluator:
    """Scores subnets of `supernet` on `data` ("digits", an image folder, or {resolution: Dataset}).

    The supernet is moved to `device` (default: CUDA when available, else the CPU) and read only.
    Scores are cached per canonical architecture and recalibration flag."""

    def __init__(self, supernet: Supernet, data: Data = "digits", *, calib_images: int = CALIBRATION_IMAGES,
                 seed: int = 0, device: str | torch.device | None = None) -> None:
        if isinstance(calib_images, bool) or not isinstance(calib_images, int) or calib_images < 2:
            raise DataError(f"calibration images must be an integer of at least 2, got {calib_images!r}")
        self.device = pick_device(device)
        self.supernet = supernet.to(self.device)
        self.space = supernet.space
        self.data, self.calib_images, self.seed = data, calib_images, seed
        self._images: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._scores: dict[tuple[Arch, bool], SubnetScore] = {}
        self._statistics: OrderedDict[Arch, dict[str, torch.Tensor]] = OrderedDict()

    # ---- data ----

    def _dataset(self, resolution: int) -> Dataset:
        data = self.data
        if isinstance(data, Mapping):
            if resolution not in data:
                raise DataError(f"data: no data set at resolution {resolution} (given: "
                                f"{', '.join(map(str, sorted(data)))})")
            data = data[resolution]
        ds = _dataset(data, resolution, self.space.in_channels)
        if ds.num_classes != self.space.num_classes:
            raise DataError(f"{ds.source}: {ds.num_classes} classes, but the supernet of {self.space.file} has "
                            f"{self.space.num_classes} outputs; score it on the data it was trained on")
        return ds

    def images(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(calibration images, test images, test labels) at `resolution`, on the device."""
        if resolution not in self._images:
            ds = self._dataset(resolution)
            pick = calibration_indices(len(ds.y_train), self.calib_images, self.seed)
            self._images[resolution] = (_to(ds.x_train[pick], self.device), _to(ds.x_test, self.device),
                                        ds.y_test.to(self.device))
        return self._images[resolution]

    # ---- subnets ----

    def arch(self, arch: Mapping[str, Any] | None) -> Arch:
        """`arch` checked against the space and canonical (decisions that change nothing at their first
        choice), the key of every cache here."""
        return canonical(self.space, Arch.of(arch or {}, self.space))

    def module(self, arch: Mapping[str, Any] | None, recalibrate: bool = True) -> nn.Module:
        """The subnet as a module that runs on the supernet's own weights (no copy): with its recalibrated
        statistics, or the supernet's shared ones. Read-only: call it in eval mode only."""
        arch = self.arch(arch)
        net_plan = self.supernet.plan(arch)
        tensors = {k: v.detach() for k, v in self.supernet.weights(arch, net_plan).items()}
        if recalibrate:
            tensors.update(self.statistics(arch))
        return _Bound(self.supernet.skeleton(net_plan), tensors).eval()

    def statistics(self, arch: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
        """The subnet's recalibrated batch-norm buffers, named as in its static network's state dict."""
        arch = self.arch(arch)
        hit = self._statistics.get(arch)
        if hit is not None:
            self._statistics.move_to_end(arch)
            return hit
        net_plan = self.supernet.plan(arch)
        skeleton = self.supernet.skeleton(net_plan)
        fresh = _fresh_statistics(skeleton, self.device)
        tensors = {k: v.detach() for k, v in self.supernet.weights(arch, net_plan).items()}
        # recalibrate_bn resets the skeleton's own (meta) statistics, which nothing reads, and sets each
        # norm's momentum to a plain average for the pass; the pass writes into `fresh` in place.
        with torch.random.fork_rng(devices=[]):  # dropout in train mode must not move the caller's RNG
            recalibrate_bn(_Bound(skeleton, {**tensors, **fresh}), self.images(net_plan.resolution)[0])
        self._statistics[arch] = fresh
        if len(self._statistics) > BUFFER_CACHE:
            self._statistics.popitem(last=False)
        return fresh

    def score(self, arch: Mapping[str, Any] | None, recalibrate: bool = True) -> SubnetScore:
        """Held-out top-1 and log-loss of the subnet `arch`, recalibrated first unless told not to."""
        arch = self.arch(arch)
        key = (arch, bool(recalibrate))
        if key not in self._scores:
            _, x_test, y_test = self.images(self.supernet.plan(arch).resolution)  # prepared once, not timed
            start = time.perf_counter()
            top1, loss = evaluate_loss(self.module(arch, recalibrate), x_test, y_test)
            self._scores[key] = SubnetScore(top1=top1, log_loss=loss, seconds=time.perf_counter() - start)
        return self._scores[key]

    def recalibrated(self, arch: Mapping[str, Any] | None) -> Network:
        """The subnet as a static `nas.builder.Network` on the CPU, in eval mode: its own copy of the cut
        weights with the recalibrated statistics (what an export with weights saves)."""
        arch = self.arch(arch)
        net = self.supernet.subnet(arch).cpu()
        state = net.state_dict()
        state.update({k: v.cpu() for k, v in self.statistics(arch).items()})
        net.load_state_dict(state, strict=True)
        return net.eval()
