"""A weight-sharing supernet built from a search space: every subnet of the space runs in it.

One `Bank` per unit position (stem units, each block position of each stage, head units) holds the
largest tensor of every role that the position's configs use (`nas.supernet.elastic`). A subnet is
run by planning it (`nas.space.plan`), building the static network of `nas.ops` on the meta device
(no memory, cached) and calling it with tensors cut from the banks (`torch.func.functional_call`).
So a subnet computes exactly what the static operators compute with those weights: the elastic
behaviour (kernel crop, first-N channels, depth as the first k blocks, SE on or off, the op choice) is
all in which tensors are cut. Gradients flow back into the banks through the cuts, and in training
mode batch norms update the cut part of the shared running statistics in place.

Resolution is the input's: feed each subnet images at its resolution (`Arch["res"]`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch
from torch import nn
from torch.func import functional_call

from nas.builder import Network, build_plan
from nas.errors import ArchError
from nas.ops import BlockConfig, BlockKey, NormSpec, Op, get_op
from nas.space import NetPlan, SearchSpace, Unit, plan
from nas.space.plan import head_configs, stem_configs
from nas.space.positions import configs, positions
from nas.supernet.elastic import Slot, cut_index, initial_tensor, slots

SKELETON_CACHE = 512  # meta-device networks kept per supernet (each is a few hundred small objects)


class SupernetError(ArchError):
    """An architecture the supernet cannot run, or a supernet that does not fit the space."""


@dataclass(frozen=True)
class _Cut:
    """How one unit's tensors come out of its position's bank: (name in unit, bank attribute, index)."""

    items: tuple[tuple[str, str, tuple[slice, ...]], ...]


class Bank(nn.Module):
    """The largest tensor of every role used at one unit position; tensors are named t0, t1, ... in
    role order, so the state dict of a supernet is the same for the same space on every run."""

    def __init__(self, roles: Mapping[str, tuple[tuple[int, ...], bool, torch.Tensor]]) -> None:
        super().__init__()
        self.attr: dict[str, str] = {}
        for i, (role, (shape, is_param, value)) in enumerate(sorted(roles.items())):
            name = f"t{i}"
            self.attr[role] = name
            if is_param:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def tensor(self, role: str) -> torch.Tensor:
        return getattr(self, self.attr[role])


def _position_configs(space: SearchSpace) -> Iterator[tuple[tuple[str, int], list[BlockConfig]]]:
    """((stage name, index), every config the unit there can take) for every unit position."""
    for i, config in enumerate(stem_configs(space)):
        yield ("stem", i), [config]
    for pos in positions(space):
        yield (pos.stage.name, pos.index), [config for _, config in configs(pos)]
    last = sorted({space.channels(w) for w in space.stages[-1].width})
    heads = [head_configs(space, c) for c in last]
    for i in range(len(heads[0])):
        yield ("head", i), [h[i] for h in heads]


def _meta_unit(key: BlockKey, norm: NormSpec) -> Op:
    """The static unit of `key` on the meta device (`Op.skeleton`): cheap, and it draws nothing from torch's
    random generator (`Op.create` would allocate and initialise real weights, which the cuts replace)."""
    unit = get_op(key.config.op).skeleton(key.config, norm)
    unit.input_shape = key.input_shape
    return unit


class Supernet(nn.Module):
    """The supernet of `space`. `forward(x, arch)` runs the subnet `arch` selects on `x`."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        # Per config: a meta unit and its slots. Block positions of a stage see the same configs, so
        # each config is walked once however many positions it appears at.
        self._slots: dict[BlockConfig, tuple[Op, tuple[Slot, ...]]] = {}
        self.index: dict[tuple[str, int], int] = {}
        banks = []
        for where, position_configs in _position_configs(space):
            self.index[where] = len(banks)
            banks.append(self._new_bank(position_configs))
        self.banks = nn.ModuleList(banks)
        self._cuts: dict[tuple[str, int, BlockConfig], _Cut] = {}
        self._skeletons: OrderedDict[tuple, Network] = OrderedDict()
        self._units: dict[tuple, Op] = {}  # meta units by (position, key), shared by the cached skeletons

    def _config_slots(self, config: BlockConfig) -> tuple[Op, tuple[Slot, ...]]:
        """A meta unit of `config` (its input size does not change its tensors) and its slots."""
        hit = self._slots.get(config)
        if hit is None:
            unit = _meta_unit(BlockKey(config, (config.cin, 1, 1)), self.space.norm)
            hit = self._slots[config] = (unit, tuple(slots(unit)))
        return hit

    def _new_bank(self, position_configs: list[BlockConfig]) -> Bank:
        """A bank with, for every role the configs use, a fresh tensor of the largest shape among them."""
        roles: dict[str, tuple[tuple[int, ...], bool, Slot, Op]] = {}
        for config in dict.fromkeys(position_configs):
            unit, unit_slots = self._config_slots(config)
            for slot in unit_slots:
                have = roles.get(slot.role)
                shape = slot.shape if have is None else tuple(map(max, have[0], slot.shape))
                roles[slot.role] = (shape, slot.is_param, *((slot, unit) if have is None else have[2:]))
        return Bank({role: (shape, is_param, initial_tensor(unit, slot, shape))
                     for role, (shape, is_param, slot, unit) in roles.items()})

    # ---- cutting ----

    def _cut(self, stage: str, index: int, config: BlockConfig) -> _Cut:
        key = (stage, index, config)
        cut = self._cuts.get(key)
        if cut is not None:
            return cut
        where = f"{stage}.b{index}" if stage not in ("stem", "head") else f"{stage} unit {index}"
        text = get_op(config.op).config_text(config)
        if (stage, index) not in self.index:
            raise SupernetError(f"{self.space.file}: the supernet has no unit at {where} (for {text})")
        bank = self.banks[self.index[(stage, index)]]
        items = []
        for slot in self._config_slots(config)[1]:
            if slot.role not in bank.attr:
                raise SupernetError(f"{self.space.file}: the supernet cannot represent {where} = {text}: "
                                    f"no shared weights for {slot.role}")
            big = tuple(bank.tensor(slot.role).shape)
            if len(big) != len(slot.shape) or any(s > b for s, b in zip(slot.shape, big)):
                raise SupernetError(f"{self.space.file}: the supernet cannot represent {where} = {text}: "
                                    f"{slot.name} needs {list(slot.shape)}, the supernet holds {list(big)}")
            items.append((slot.name, bank.attr[slot.role], cut_index(big, slot.shape)))
        cut = self._cuts[key] = _Cut(tuple(items))
        return cut

    def plan(self, arch: Mapping[str, Any] | None) -> NetPlan:
        return plan(self.space, arch or {})

    def weights(self, arch: Mapping[str, Any] | None, net_plan: NetPlan | None = None) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the static network `arch` selects, named as in
        `nas.builder.build(space, arch).state_dict()`, as views into the supernet (no copy)."""
        net_plan = net_plan or self.plan(arch)
        out: dict[str, torch.Tensor] = {}
        counts = {"stem": 0, "blocks": 0, "head": 0}
        for unit in net_plan.units:
            part = unit.stage if unit.stage in ("stem", "head") else "blocks"
            prefix = f"{part}.{counts[part]}."
            counts[part] += 1
            cut = self._cut(unit.stage, unit.index, unit.key.config)  # refuses a position the supernet lacks
            bank = self.banks[self.index[(unit.stage, unit.index)]]
            for name, attr, index in cut.items:
                out[prefix + name] = getattr(bank, attr)[index]
        return out

    # ---- running subnets ----

    def skeleton(self, net_plan: NetPlan) -> Network:
        """The static network of `net_plan` on the meta device (cached): structure without memory."""
        key = tuple(u.key for u in net_plan.units)
        net = self._skeletons.get(key)
        if net is None:
            parts = {"stem": "stem", "head": "head"}
            net = Network([(parts.get(u.stage, "blocks"), self._skeleton_unit(u)) for u in net_plan.units],
                          net_plan.resolution)
            self._skeletons[key] = net
            if len(self._skeletons) > SKELETON_CACHE:
                self._skeletons.popitem(last=False)
        else:
            self._skeletons.move_to_end(key)
        return net

    def _skeleton_unit(self, unit: Unit) -> Op:
        """The meta unit of `unit`, shared by the cached skeletons that have it at the same position; one
        network never holds one module twice, since each of its units would then take the same cut."""
        key = ((unit.stage, unit.index), unit.key)
        module = self._units.get(key)
        if module is None:
            module = self._units[key] = _meta_unit(unit.key, self.space.norm)
        return module

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any] | None = None) -> torch.Tensor:
        net_plan = self.plan(arch)
        if x.shape[-1] != net_plan.resolution or x.shape[-2] != net_plan.resolution:
            raise SupernetError(f"{self.space.file}: the subnet takes {net_plan.resolution}x{net_plan.resolution} "
                                f"inputs, got {tuple(x.shape[-2:])}")
        net = self.skeleton(net_plan)
        net.train(self.training)
        return functional_call(net, self.weights(arch, net_plan), (x,), strict=True)

    def subnet(self, arch: Mapping[str, Any] | None = None) -> Network:
        """The static network `arch` selects, with its own copy of the weights cut from the supernet (and
        of the running statistics as they stand): a plain `nn.Module`, in the supernet's train/eval mode."""
        net_plan = self.plan(arch)
        net = build_plan(net_plan, self.space.norm, init=False)
        net.load_state_dict({k: v.detach().clone() for k, v in self.weights(arch, net_plan).items()}, strict=True)
        return net.train(self.training)
