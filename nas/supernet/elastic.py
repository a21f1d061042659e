"""Which weights an operator's configs share at one position of a supernet, and how a smaller config's
tensor is cut out of the largest.

A unit module is walked in order. Each conv or linear on its main path adds a token to the path
("conv", "dw" for depthwise, "fc"); a tensor's *role* is the op name, the path up to and including
its owner, and its own name. Two configs at one position share a tensor exactly when they have a
tensor with the same role: an inverted residual with or without squeeze-excite shares its expand,
depthwise and projection weights; a sandglass block whose layout changes with its ratio (MobileNeXt's
t == 2 rule) gets separate weights for the other layout, since its first 1x1 conv then plays another
part. Squeeze-excite weights hang off the path where the SE sits; a batch norm belongs to the conv
before it.

Cutting (OFA's elastic width, kernel and expand): the first N of every channel dimension, the centre
crop of a larger kernel. An op whose channels are positional (`Op.elastic_channels` False, e.g.
ShuffleNet's split and shuffle) and any grouped, non-depthwise conv keep one tensor per exact shape.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from nas.ops import Op, SqueezeExcite, init_weights



@dataclass(frozen=True)
class Slot:
    """One parameter or buffer of a unit module and the role it plays there."""

    name: str  # its name inside the unit module, e.g. "block.1.0.weight"
    role: str  # what it shares: "inverted_residual:conv.dw/weight"
    shape: tuple[int, ...]
    is_param: bool


def _conv_token(conv: nn.Conv2d) -> tuple[str, bool]:
    """The path token of a conv, and whether its channels may be cut."""
    if conv.groups == 1:
        return "conv", True
    if conv.groups == conv.in_channels == conv.out_channels:
        return "dw", True
    return f"g{conv.groups}", False


def slots(unit: Op) -> list[Slot]:
    """Every tensor of `unit` (parameters and buffers, in module order) with its role."""
    path: list[str] = []
    out: list[Slot] = []
    se_prefix: tuple[str, str] | None = None  # (module name of the SE, path where it sits)
    elastic = type(unit).elastic_channels
    for mod_name, module in unit.named_modules():
        if isinstance(module, SqueezeExcite):
            se_prefix = (mod_name + ".", ".".join(path))
        inside_se = se_prefix is not None and mod_name.startswith(se_prefix[0])
        tensors = [(n, t, True) for n, t in module.named_parameters(recurse=False)]
        tensors += [(n, t, False) for n, t in module.named_buffers(recurse=False)]
        if not tensors:
            continue
        exact = not elastic
        if inside_se:
            where = f"{se_prefix[1]}+se.{mod_name[len(se_prefix[0]):]}"
        elif isinstance(module, nn.Conv2d):
            token, cuttable = _conv_token(module)
            path.append(token)
            exact = exact or not cuttable
            where = ".".join(path)
        elif isinstance(module, nn.Linear):
            path.append("fc")
            where = ".".join(path)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            where = ".".join(path) + "/bn"
        else:
            where = ".".join(path) + "+" + type(module).__name__
        for name, t, is_param in tensors:
            full = f"{mod_name}.{name}" if mod_name else name
            role = f"{type(unit).name}:{where}/{name}"
            if exact:
                role += "@" + "x".join(map(str, t.shape))
            out.append(Slot(full, role, tuple(t.shape), is_param))
    return out


def cut_index(big: tuple[int, ...], small: tuple[int, ...]) -> tuple[slice, ...]:
    """Index that cuts a `small` tensor out of a `big` one: the first N along channel dimensions and the
    centre crop along the two kernel dimensions of a conv weight (4-D)."""
    index = []
    for dim, (b, s) in enumerate(zip(big, small)):
        if s > b:
            raise ValueError(f"cannot cut {small} from {big}")
        if len(big) == 4 and dim >= 2:
            start = (b - s) // 2
            index.append(slice(start, start + s))
        else:
            index.append(slice(0, s))
    return tuple(index)


def initial_tensor(unit: Op, slot: Slot, shape: tuple[int, ...]) -> torch.Tensor:
    """A fresh tensor of the largest `shape` for `slot`, initialised as the builder initialises that
    kind of module (`nas.ops.init_weights`: He-normal convs, N(0, 0.01) linears, unit batch norms)."""
    owner_name, _, attr = slot.name.rpartition(".")
    owner = unit.get_submodule(owner_name) if owner_name else unit
    if isinstance(owner, nn.Conv2d) and attr == "weight":
        t = torch.empty(shape)
        nn.init.kaiming_normal_(t, mode="fan_out")
        return t
    if isinstance(owner, nn.Linear) and attr == "weight":
        return torch.empty(shape).normal_(0.0, 0.01)
    # Anything else (biases, batch norms, an op's own parameter module such as a layer scale) starts
    # at the value its own reset gives, which for these is a constant per tensor.
    real = copy.deepcopy(owner).to_empty(device="cpu")
    init_weights(real)
    value = dict([*real.named_parameters(recurse=False), *real.named_buffers(recurse=False)])[attr].detach()
    if value.numel() and not bool((value == value.flatten()[0]).all()):
        raise ValueError(f"{slot.role}: its start value is not a constant, so it cannot be widened")
    fill = value.flatten()[0] if value.numel() else 0
    return torch.full(shape, fill.item() if isinstance(fill, torch.Tensor) else fill, dtype=value.dtype)

