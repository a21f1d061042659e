"""Arch -> a static `nn.Module`. Channels, strides and layout come from `nas.space.plan`; this module
turns the planned units into operators, wires them in order and initialises weights."""
from __future__ import annotations

import contextlib
from typing import Any, Mapping

import torch
from torch import nn

from nas.ops import BlockKey, NormSpec, Op, deferred_init, get_op, init_weights
from nas.space import NetPlan, SearchSpace, plan


class Network(nn.Module):
    """stem -> blocks -> head, each an `nn.Sequential` of `Op` units that know their key."""

    def __init__(self, units: list[tuple[str, Op]], resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.stem = nn.Sequential(*[m for part, m in units if part == "stem"])
        self.blocks = nn.Sequential(*[m for part, m in units if part == "blocks"])
        self.head = nn.Sequential(*[m for part, m in units if part == "head"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def units(self) -> list[Op]:
        """Every unit in execution order."""
        return [*self.stem, *self.blocks, *self.head]

    def keys(self) -> list[BlockKey]:
        return [u.key for u in self.units()]


def build_unit(key: BlockKey, norm: NormSpec) -> Op:
    """One operator module from its key (used for whole networks and for per-block costing)."""
    module = get_op(key.config.op).create(key.config, norm)
    module.input_shape = key.input_shape
    return module


def build_plan(net: NetPlan, norm: NormSpec, *, init: bool = True) -> Network:
    """Modules for a planned network. Each unit is initialised once as it is made (torchvision's
    scheme); with `init=False` the weights are allocated but left unset (call `init_weights` later)."""
    parts = {"stem": "stem", "head": "head"}
    with contextlib.nullcontext() if init else deferred_init():
        units = [(parts.get(u.stage, "blocks"), build_unit(u.key, norm)) for u in net.units]
    return Network(units, net.resolution)


def build(space: SearchSpace, arch: Mapping[str, Any] | None = None, *, init: bool = True) -> Network:
    """Build the network that `arch` selects in `space` (a fixed architecture needs no arch)."""
    return build_plan(plan(space, arch or {}), space.norm, init=init)
