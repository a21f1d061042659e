"""Write an architecture of a space as a fixed-architecture YAML (the same format, no choices left)."""
from __future__ import annotations

import os
from typing import Any, Mapping

from nas.ops import field, get_op
from nas.space.arch import canonical, encode
from nas.space.schema import SearchSpace
from nas.space.yamlio import write_yaml_atomic


def _pick(arch: Mapping[str, Any], name: str, choices: tuple) -> Any:
    return arch[name] if len(choices) > 1 else choices[0]


def fixed_dict(space: SearchSpace, arch: Mapping[str, Any], name: str | None = None) -> dict:
    """The plain-data fixed architecture that `arch` selects in `space`."""
    arch = canonical(space, arch)
    stages = []
    for stage in space.stages:
        depth = _pick(arch, f"{stage.name}.depth", stage.depth)
        blocks = []
        for j in range(depth):
            choices = stage.blocks[j].choices
            op = _pick(arch, f"{stage.name}.b{j}.op", choices["op"])
            used = get_op(op).fields
            block: dict[str, Any] = {"op": op}
            for key, ch in choices.items():
                if key == "op" or key not in used:
                    continue
                value = _pick(arch, f"{stage.name}.b{j}.{key}", ch)
                spec = field(key)  # core fields always written, the rest when they differ from their default
                if spec.core or not spec.fill or value != spec.default:
                    block[key] = value
            blocks.append(block)
        stages.append({"name": stage.name, "stride": stage.stride,
                       "width": _pick(arch, f"{stage.name}.width", stage.width), "blocks": blocks})
    stem = space.stem
    head = space.head
    head_data: dict[str, Any] = {}
    if head.conv_out is not None:
        head_data["conv"] = {"out": head.conv_out, "act": head.conv_act}
    head_data["pool"] = head.pool
    if head.hidden is not None:
        head_data["hidden"] = {"out": head.hidden, "act": head.hidden_act}
        if head.hidden_norm:
            head_data["hidden"]["norm"] = True
    head_data.update(dropout=head.dropout, bias=head.bias)
    data: dict[str, Any] = {
        "name": name or f"{space.name}-arch",
        "in_channels": space.in_channels,
        "num_classes": space.num_classes,
        "resolution": _pick(arch, "res", space.resolution),
        "width_mult": space.width_mult,
        "channel_divisor": space.channel_divisor,
        "norm": {"eps": space.norm.eps, "momentum": space.norm.momentum},
        "stem": {"out": stem.out, "kernel": stem.kernel, "stride": stem.stride, "act": stem.act, "pool": stem.pool},
        "stages": stages,
        "head": head_data,
    }
    return data


def write_fixed(space: SearchSpace, arch: Mapping[str, Any], path: str | os.PathLike, name: str | None = None) -> None:
    """Write the fixed-architecture YAML of `arch` atomically, with its origin in a comment."""
    header = f"# Fixed architecture from {space.file}\n# arch: {encode(space, arch)}\n"
    write_yaml_atomic(path, fixed_dict(space, arch, name), header)
