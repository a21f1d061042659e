"""Arch -> the exact list of units (static config + input shape), without building any module.

This is where channels, strides, hidden widths and position-dependent layout
flags are decided, once, for the builder, the cost cache and the latency
table alike. It needs no torch modules, so scoring a candidate stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, Mapping

from nas.errors import ArchError
from nas.ops import BlockConfig, BlockKey, field, get_op, with_shape
from nas.space.schema import SearchSpace, StageSpace


@dataclass(frozen=True)
class Unit:
    """One unit of a planned network: where it sits and its key."""

    stage: str  # "stem", a stage name, or "head"
    index: int  # position within its stage
    key: BlockKey

    @cached_property
    def text(self) -> str:
        """Canonical key text (only the fields the op uses)."""
        return get_op(self.key.config.op).key_text(self.key)


@dataclass(frozen=True)
class NetPlan:
    resolution: int
    units: tuple[Unit, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.units[0].key.input_shape


def block_config(fields: Mapping[str, Any], cin: int, cout: int, stride: int, **position: bool) -> BlockConfig:
    """Resolve one block's field values into a `BlockConfig`; fields its op does not use are dropped.
    `position` holds flags set by where the unit sits (first_unit, keep_3x3); the op keeps those it declares."""
    cls = get_op(fields["op"])
    values: dict[str, Any] = {}
    for name in cls.fields:
        spec = field(name)
        value = fields.get(name, spec.default if spec.fill else None)
        if value is None or name in ("expand", "hidden"):
            continue
        if spec.gate in cls.fields and not fields.get(spec.gate, field(spec.gate).default):
            continue  # an option that changes nothing with its switch off keeps its default: equal keys
        values[name] = type(spec.default)(value)
    expand, hidden = fields.get("expand") if "expand" in cls.fields else None, fields.get("hidden")
    return BlockConfig(
        op=cls.name, cin=cin, cout=cout, stride=stride, **values,
        expand=float(expand) if expand is not None else 0.0,
        hidden=cls.hidden_channels(cin, cout, expand, hidden if "hidden" in cls.fields else None),
        **{k: v for k, v in position.items() if k in cls.position_flags},
    )


def out_size(size: int, stride: int) -> int:
    """Spatial size after a unit: every conv and pool here is 'same'-padded with an odd kernel."""
    return (size - 1) // stride + 1


def plan(space: SearchSpace, values: Mapping[str, Any]) -> NetPlan:
    """The units of the network that `values` (decision name -> value) selects in `space`."""

    def pick(name: str, choices: tuple[Any, ...]) -> Any:
        if len(choices) == 1:
            return choices[0]
        if name not in values:
            raise ArchError(f"{space.file}: the architecture gives no value for decision {name!r}")
        value = values[name]
        if value not in choices:
            raise ArchError(f"{space.file}: {name}: {value!r} is not one of {list(choices)}")
        return value

    values = getattr(values, "_index", values)  # an Arch's plain dict: C-speed lookups on the hot path
    memo: dict = space._memo  # type: ignore[attr-defined]
    res = pick("res", space.resolution)
    units: list[Unit] = list(_memo_units(memo, ("stem", res), lambda: _stem_units(space, res)))
    shape = _shape_after(units[-1])

    for si, (stage, depth_name, width_name, blocks) in enumerate(_stages(space, memo)):
        depth = pick(depth_name, stage.depth)
        width = pick(width_name, stage.width)
        cout = memo.get(("channels", width))
        if cout is None:
            cout = memo[("channels", width)] = space.channels(width)
        for j in range(depth):
            names = blocks[j]
            try:
                chosen = names[2](values) if names[2] is not None else ()
            except KeyError as exc:
                raise ArchError(f"{space.file}: the architecture gives no value for decision {exc.args[0]!r}") from None
            keep_3x3 = j == 0 and depth == 1 and stage.stride == 1
            # Units repeat across candidates: resolve each distinct one once per space.
            memo_key = (si, j, chosen, shape, cout, keep_3x3)
            hit = memo.get(memo_key)
            if hit is None:  # values are checked on a miss; a hit means they were checked before
                hit = memo[memo_key] = _resolve(memo, names, chosen, shape, cout, keep_3x3, stage.name, j, pick)
            units.append(hit[0])
            shape = hit[1]

    units.extend(_memo_units(memo, ("head", shape), lambda: _head_units(space, shape)))
    return NetPlan(resolution=res, units=tuple(units))


def _stages(space: SearchSpace, memo: dict) -> list[tuple]:
    """Per stage, made once per space: (stage, depth and width decision names, per block position
    its decisions, fixed fields, a C-speed getter of its picks, and what fixes its config apart
    from position). Only real decisions are picked per candidate; fixed fields are constant."""
    stages = memo.get("stages")
    if stages is None:
        stages = memo["stages"] = [
            (stage, f"{stage.name}.depth", f"{stage.name}.width",
             [_block_names(si, stage, j) for j in range(len(stage.blocks))])
            for si, stage in enumerate(space.stages)]
    return stages


def _block_names(si: int, stage: StageSpace, j: int) -> tuple:
    choices = stage.blocks[j].choices
    decisions = tuple((f, f"{stage.name}.b{j}.{f}", ch) for f, ch in choices.items() if len(ch) > 1)
    fixed = {f: ch[0] for f, ch in choices.items() if len(ch) == 1}
    return (
        decisions,
        fixed,
        itemgetter(*[name for _, name, _ in decisions]) if decisions else None,
        # equal blocks at other positions share a config; the choices are part of what identifies
        # it, so a hit found elsewhere means the picks were checked against these same choices
        (tuple((f, ch) for f, _, ch in decisions), tuple(fixed.items()), stage.stride if j == 0 else 1,
         si == 0 and j == 0),
    )


def _resolve(memo: dict, names: tuple, chosen: tuple, shape: tuple[int, int, int], cout: int,
             keep_3x3: bool, stage: str, index: int, pick) -> tuple[Unit, tuple[int, int, int]]:
    """The unit a block's picks make at this position, and the shape after it.

    A block's config does not depend on the spatial size, and the same block recurs at other
    depths of its stage and at every resolution: its config and the config part of its key text
    are shared through a memo without position or size, so a new unit mostly costs a few objects.
    """
    decisions, fixed, _, signature = names
    config_key = ("config", signature, chosen, shape[0], cout, keep_3x3)
    shared = memo.get(config_key)
    if shared is None:
        fields = {**fixed, **{f: pick(name, ch) for (f, name, ch) in decisions}}
        stride, first_unit = signature[2], signature[3]
        config = block_config(fields, shape[0], cout, stride, first_unit=first_unit, keep_3x3=keep_3x3)
        shared = memo[config_key] = (config, get_op(config.op).config_text(config))
    config, config_part = shared
    unit = Unit(stage, index, BlockKey(config, shape))
    unit.__dict__["text"] = with_shape(config_part, shape)  # seed the cached property: same text, made cheaply
    return unit, _shape_of(config, shape)


def _memo_units(memo: dict, key: tuple, make) -> tuple[Unit, ...]:
    """Stem and head units depend only on their input shape: make them once per space and shape."""
    units = memo.get(key)
    if units is None:
        units = memo[key] = make()
    return units


def _shape_after(unit: Unit) -> tuple[int, int, int]:
    return _shape_of(unit.key.config, unit.key.input_shape)


def _shape_of(config: BlockConfig, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return get_op(config.op).out_shape(config, shape)


def chain(stage: str, configs: list[BlockConfig], shape: tuple[int, int, int]) -> tuple[Unit, ...]:
    """Units for `configs` applied in order to an input of `shape`, indexed within `stage`."""
    units = []
    for index, config in enumerate(configs):
        units.append(Unit(stage, index, BlockKey(config, shape)))
        shape = _shape_after(units[-1])
    return tuple(units)


def stem_configs(space: SearchSpace) -> list[BlockConfig]:
    """The stem's units: a conv, and a max-pool when the space asks for one."""
    stem = space.stem
    cout = space.channels(stem.out)
    configs = [BlockConfig(op="conv_bn_act", cin=space.in_channels, cout=cout, stride=stem.stride,
                           kernel=stem.kernel, act=stem.act)]
    if stem.pool == "max":
        configs.append(BlockConfig(op="max_pool", cin=cout, cout=cout, stride=2, kernel=3))
    return configs


def head_configs(space: SearchSpace, channels: int) -> list[BlockConfig]:
    """The head's units after a last stage of `channels`: [1x1 conv], global pool, classifier."""
    head = space.head
    configs = []
    if head.conv_out is not None:
        configs.append(BlockConfig(op="conv_bn_act", cin=channels, cout=space.head_channels(head.conv_out), stride=1,
                                   kernel=1, act=head.conv_act))
        channels = configs[-1].cout
    configs.append(BlockConfig(op="global_pool", cin=channels, cout=channels, pool=head.pool))
    configs.append(BlockConfig(op="classifier", cin=channels, cout=space.num_classes,
                               hidden=space.head_channels(head.hidden) if head.hidden else 0,
                               act=head.hidden_act if head.hidden else "none", dropout=head.dropout,
                               bias=head.bias, hidden_norm=bool(head.hidden and head.hidden_norm)))
    return configs


def _stem_units(space: SearchSpace, res: int) -> tuple[Unit, ...]:
    return chain("stem", stem_configs(space), (space.in_channels, res, res))


def _head_units(space: SearchSpace, shape: tuple[int, int, int]) -> tuple[Unit, ...]:
    return chain("head", head_configs(space, shape[0]), shape)
